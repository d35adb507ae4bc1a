//! The consent page: a plain HTML form (no JavaScript), so it works in any browser, with a
//! screen reader, or from a script. Every string an agent supplied is escaped by `maud`; the
//! page forbids framing and everything but its own inline style (by nonce).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::authorize::ACCESS_FIELD;
use super::{AUTHORIZE_PATH, AgentRecord, Registration};

/// A provider the user can give the agent access to.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub resource: String,
    pub name: String,
}

pub(super) struct Page<'a> {
    pub client: &'a AgentRecord,
    pub redirect_uri: &'a str,
    pub offers: &'a [Offer],
    pub request_id: &'a str,
    pub csrf: &'a str,
}

/// The levels, in the order shown; `none` first and selected.
const LEVELS: [(&str, &str); 4] = [
    ("none", "No access"),
    ("read", "Read only"),
    ("ask", "Read; ask me before writes"),
    ("write", "Read and write"),
];

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#1b1f24}\
h1{font-size:1.35rem}.badge{display:inline-block;padding:.1rem .5rem;border-radius:.6rem;font-size:.85rem}\
.verified{background:#dff5e3;color:#14532d}.unverified{background:#fdecc8;color:#7a4b00}\
table{border-collapse:collapse;width:100%;margin:1rem 0}td,th{text-align:left;padding:.4rem;border-bottom:1px solid #e3e6ea}\
.actions{display:flex;gap:.75rem}button{font:inherit;padding:.45rem 1.1rem;border-radius:.4rem;border:1px solid #8a9099;background:#fff}\
button[value=allow]{background:#1f6feb;color:#fff;border-color:#1f6feb}.muted{color:#59636e}";

pub(super) fn render(page: &Page) -> Response {
    let client = page.client;
    let redirect_host = url::Url::parse(page.redirect_uri)
        .ok()
        .map(|u| match u.host_str() {
            Some(host) => host.to_string(),
            None => format!("{}:", u.scheme()),
        })
        .unwrap_or_default();
    // The origin vouches for the document, so its port is part of the name (another port of
    // the same host can be anyone's server).
    let verified_host = url::Url::parse(&client.client_id).ok().and_then(|u| {
        let host = u.host_str()?;
        Some(match u.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        })
    });
    let body = html! {
        h1 { "Allow " (client.name) " to use your connections?" }
        p {
            @match (client.registration, &verified_host) {
                (Registration::Cimd, Some(host)) => {
                    span.badge.verified data-testid="verified" { "Verified" }
                    " published by " strong { (host) }
                }
                _ => {
                    span.badge.unverified data-testid="unverified" { "Unverified" }
                    " the name is what the agent says about itself"
                }
            }
        }
        p.muted { "After you decide, your browser returns to " strong { (redirect_host) } "." }
        form method="post" action=(AUTHORIZE_PATH) {
            input type="hidden" name="request" value=(page.request_id);
            input type="hidden" name="csrf" value=(page.csrf);
            @if page.offers.is_empty() {
                p { "No provider is connected yet. You can allow this agent now and give it access "
                    "after you connect providers in Keycard Broker." }
            } @else {
                table {
                    thead { tr { th scope="col" { "Provider" } th scope="col" { "Access" } } }
                    tbody {
                        @for offer in page.offers {
                            @let field = format!("{ACCESS_FIELD}{}", offer.resource);
                            tr {
                                td { label for=(field) { (offer.name) } br; span.muted { (offer.resource) } }
                                td {
                                    select id=(field) name=(field) {
                                        @for (value, label) in LEVELS {
                                            option value=(value) selected[value == "none"] { (label) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            p.muted { "Writes you mark \u{201c}ask me\u{201d} wait for your approval in Keycard Broker. "
                "You can change this or sign the agent out at any time." }
            div.actions {
                button type="submit" name="decision" value="allow" { "Allow" }
                button type="submit" name="decision" value="deny" { "Deny" }
            }
        }
    };
    respond(StatusCode::OK, &format!("Allow {}?", client.name), body)
}

/// A page that explains why a sign-in cannot go on (nothing redirects from here).
pub(super) fn error(status: StatusCode, message: &str) -> Response {
    let body = html! {
        h1 { "This sign-in cannot continue" }
        p role="alert" { (message) }
        p.muted { "Nothing was granted. You can close this tab." }
    };
    respond(status, "Keycard Broker", body)
}

fn respond(status: StatusCode, title: &str, body: Markup) -> Response {
    let nonce = super::new_id(16);
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " \u{2014} Keycard Broker" }
                style nonce=(nonce) { (STYLE) }
            }
            body { (body) }
        }
    };
    let csp = format!(
        "default-src 'none'; style-src 'nonce-{nonce}'; frame-ancestors 'none'; base-uri 'none';"
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_string()),
            (header::CONTENT_SECURITY_POLICY, csp),
            (header::X_FRAME_OPTIONS, "DENY".to_string()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            (header::REFERRER_POLICY, "no-referrer".to_string()),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        page.into_string(),
    )
        .into_response()
}
