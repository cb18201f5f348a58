//! Proposing to consolidate related cases filed by several courts.

use crate::app::context::App;
use crate::matching::targets::Link;
use crate::mqtt::OutboundMeta;
use crate::store::StoreError;

/// Proposes consolidation to the supervising court for links that span several courts;
/// the store makes sure each link is proposed once, whichever replica sees it first.
pub async fn propose(app: &App, links: Vec<Link>) -> Result<(), StoreError> {
    for link in links {
        let lead = link.lead_court_id.as_deref();
        let supervisor = lead
            .or(link.court_ids.first().map(String::as_str))
            .and_then(|c| app.index.data().court(c))
            .and_then(|c| c.supervisor_court_id.as_deref());
        let messages = app
            .store
            .propose_consolidation(
                &link.key.as_text(),
                &link.target_ids,
                &link.court_ids,
                lead,
                supervisor,
                &app.topics,
                app.now(),
            )
            .await?;
        app.publisher
            .send(messages, |_| OutboundMeta::default())
            .await;
    }
    Ok(())
}
