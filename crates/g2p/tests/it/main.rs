//! End-to-end tests: the real application on real sockets, on SQLite and on PostgreSQL.

mod helpers;
