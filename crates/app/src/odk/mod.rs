//! The ODK MTS Connector's side of the application: which window of submissions a run
//! imports ([`window`]), and the import itself ([`import`]). The callbacks it leads to are
//! received by [`crate::mts::callbacks`] and applied by [`callbacks`].

pub mod callbacks;
pub mod import;
pub mod window;
