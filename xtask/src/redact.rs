//! Keeps credentials out of everything written to disk or printed: database URLs lose
//! their password, and logs have any known secret replaced.

/// `postgres://user:secret@host/db?password=x&sslmode=y` → `postgres://user@host/db?sslmode=y`.
pub fn url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let (authority_end, _) = rest
        .char_indices()
        .find(|(_, c)| matches!(c, '/' | '?' | '#'))
        .unwrap_or((rest.len(), ' '));
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{user}@{host}")
        }
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|kv| !kv.to_ascii_lowercase().starts_with("password="))
                .collect();
            if kept.is_empty() {
                path.to_owned()
            } else {
                format!("{path}?{}", kept.join("&"))
            }
        }
        None => tail.to_owned(),
    };
    match scheme {
        Some(s) => format!("{s}://{authority}{tail}"),
        None => format!("{authority}{tail}"),
    }
}

/// The password in a URL, if any, so logs can be scrubbed of it.
pub fn password(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let from_userinfo = authority
        .rsplit_once('@')
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, p)| p.to_owned());
    let from_query = url.split_once('?').and_then(|(_, q)| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("password="))
            .map(str::to_owned)
    });
    from_userinfo.or(from_query).filter(|p| !p.is_empty())
}

/// Replaces every occurrence of each secret with `***`.
pub fn text(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(text.to_owned(), |acc, s| acc.replace(s.as_str(), "***"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_passwords_from_urls() {
        assert_eq!(
            url("postgres://tasker:s3cr3t@localhost:5432/tasker"),
            "postgres://tasker@localhost:5432/tasker"
        );
        assert_eq!(
            url("postgres://localhost/db?password=x&sslmode=disable"),
            "postgres://localhost/db?sslmode=disable"
        );
        assert_eq!(url("postgres://u:p@h/db?password=x"), "postgres://u@h/db");
        assert_eq!(url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(url("postgres://u:p%40ss@h"), "postgres://u@h");
    }

    #[test]
    fn finds_and_scrubs_passwords() {
        let u = "postgres://tasker:s3cr3t@localhost/tasker";
        let p = password(u).expect("has a password");
        assert_eq!(p, "s3cr3t");
        assert_eq!(text("connecting with s3cr3t", &[p]), "connecting with ***");
        assert_eq!(
            password("postgres://h/db?password=abc").as_deref(),
            Some("abc")
        );
        assert_eq!(password("postgres://u@h/db"), None);
    }
}
