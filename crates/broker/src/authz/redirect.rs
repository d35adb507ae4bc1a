//! Redirect URIs of native agents (RFC 8252): loopback `http` (any port at request time,
//! §7.3), `https`, or a private-use scheme in reverse-domain form (§7.1). Anything else —
//! plain `http` to another host, `javascript:`, `data:`, `file:`, fragments — is refused at
//! registration, and a request must name a registered URI exactly (loopback port aside), so
//! the authorization server is never an open redirector.

use url::Url;

/// Why a redirect URI cannot be registered.
pub fn check(uri: &str) -> Result<Url, String> {
    let url = Url::parse(uri).map_err(|e| format!("redirect_uri {uri:?} is not a URL: {e}"))?;
    if url.fragment().is_some() {
        return Err(format!("redirect_uri {uri:?} has a fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("redirect_uri {uri:?} carries credentials"));
    }
    match url.scheme() {
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(format!(
            "redirect_uri {uri:?}: plain http is allowed only to a loopback address"
        )),
        "https" if url.host().is_some() => Ok(url),
        scheme if is_private_use(scheme) => Ok(url),
        _ => Err(format!(
            "redirect_uri {uri:?}: use http on loopback, https, or an app's own reverse-domain scheme"
        )),
    }
}

/// True when `requested` is one of `registered`: exactly, or a loopback URI that differs
/// only in its port.
pub fn matches(registered: &[String], requested: &str) -> bool {
    let Ok(want) = Url::parse(requested) else {
        return false;
    };
    if check(requested).is_err() {
        return false;
    }
    registered.iter().any(|r| {
        if r == requested {
            return true;
        }
        let Ok(have) = Url::parse(r) else {
            return false;
        };
        have.scheme() == "http"
            && want.scheme() == "http"
            && is_loopback(&have)
            && have.host() == want.host()
            && have.path() == want.path()
            && have.query() == want.query()
    })
}

fn is_loopback(url: &Url) -> bool {
    crate::net::is_loopback_url(url)
}

/// `com.example.app`-style schemes; never one a browser runs itself.
fn is_private_use(scheme: &str) -> bool {
    const BROWSER_SCHEMES: &[&str] = &[
        "javascript",
        "data",
        "file",
        "blob",
        "about",
        "ftp",
        "ws",
        "wss",
        "vbscript",
        "view-source",
        "chrome",
        "filesystem",
    ];
    !BROWSER_SCHEMES.contains(&scheme)
        && (scheme.contains('.') || KNOWN_APP_SCHEMES.contains(&scheme))
}

/// Apps whose documented OAuth redirect uses a short custom scheme (RFC 8252 asks for
/// reverse-domain names; these predate that advice).
const KNOWN_APP_SCHEMES: &[&str] = &["cursor", "vscode", "vscode-insiders", "windsurf", "claude"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_redirects_are_accepted_and_the_rest_refused() {
        for ok in [
            "http://127.0.0.1/callback",
            "http://127.0.0.1:33418/",
            "http://localhost:8080/cb?x=1",
            "http://[::1]:9/cb",
            "https://vscode.dev/redirect",
            "com.example.agent:/oauth2redirect",
            "cursor://anysphere.cursor-mcp/oauth/callback",
        ] {
            assert!(check(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://evil.example/cb",
            "http://127.0.0.1.evil.example/cb",
            "javascript:alert(1)",
            "data:text/html,hi",
            "file:///etc/passwd",
            "http://127.0.0.1/cb#frag",
            "https://user:pw@example.com/cb",
            "nonsense",
            "",
            "myapp:/cb",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn loopback_port_aside_matching_is_exact() {
        let registered = vec![
            "http://127.0.0.1/callback".to_string(),
            "https://app.example/cb".to_string(),
        ];
        assert!(matches(&registered, "http://127.0.0.1:51234/callback"));
        assert!(matches(&registered, "http://127.0.0.1/callback"));
        assert!(matches(&registered, "https://app.example/cb"));
        for bad in [
            "http://127.0.0.1:5/other",
            "http://localhost:5/callback",
            "https://app.example:444/cb",
            "https://app.example/cb/../x",
            "https://app.example/cb?next=https://evil.example",
            "http://evil.example/callback",
        ] {
            assert!(!matches(&registered, bad), "{bad}");
        }
    }
}
