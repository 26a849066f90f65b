//! The Registry and ODK MTS Connectors: configuration and operator actions
//! ([`connectors`]), runs ([`runs`]), the lost-callback watchdog ([`watchdog`]) and the
//! callback receiver's use case ([`callbacks`]).

pub mod callbacks;
pub mod connectors;
pub mod runs;
pub mod watchdog;

use g2p_store::Store;
use g2p_store::mts::MtsDuplicate;

use crate::error::Result;

/// Groups of registrants sharing a token, for every token type a connector writes (up to 500
/// groups per type).
pub async fn duplicates(store: &Store) -> Result<Vec<MtsDuplicate>> {
    let mut types: Vec<String> = Vec::new();
    for c in connectors::list(store).await? {
        if !types.contains(&c.settings.token_id_type) {
            types.push(c.settings.token_id_type);
        }
    }
    let mut out = Vec::new();
    for t in types {
        out.extend(store.mts_possible_duplicates(&t, 500).await?);
    }
    Ok(out)
}
