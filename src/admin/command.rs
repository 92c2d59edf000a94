//! The console's command language: PgBouncer's words where the concept is the same.

use crate::tenant::name::valid_tenant_name;

/// What `SHOW` can list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Show {
    Pools,
    Clients,
    Servers,
    Tenants,
    Shards,
    Stats,
    Config,
    Version,
    Help,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    Show(Show),
    /// Hold new transactions (of one tenant, or all) once running ones finish.
    Pause(Option<String>),
    Resume(Option<String>),
    SuspendTenant(String),
    ResumeTenant(String),
    /// Close every client of a tenant now.
    Kill(String),
    Reload,
    Shutdown,
}

/// The list printed with an unknown command and by `SHOW HELP`.
pub(crate) const COMMANDS: &[&str] = &[
    "SHOW POOLS",
    "SHOW CLIENTS",
    "SHOW SERVERS",
    "SHOW TENANTS",
    "SHOW SHARDS",
    "SHOW STATS",
    "SHOW CONFIG",
    "SHOW VERSION",
    "SHOW HELP",
    "PAUSE [tenant]",
    "RESUME [tenant]",
    "SUSPEND TENANT name",
    "RESUME TENANT name",
    "KILL tenant",
    "RELOAD",
    "SHUTDOWN",
];

/// Parses one command (keywords in any case, an optional trailing `;`, tenant names bare or
/// in double quotes).
pub(crate) fn parse(text: &str) -> Result<Command, String> {
    let text = text.trim().trim_end_matches(';').trim();
    let words: Vec<&str> = text.split_whitespace().collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    let kw: Vec<&str> = upper.iter().map(String::as_str).collect();
    let tenant = |i: usize| tenant_arg(words.get(i).copied());
    let cmd = match kw.as_slice() {
        ["SHOW", what] => Command::Show(match *what {
            "POOLS" => Show::Pools,
            "CLIENTS" => Show::Clients,
            "SERVERS" => Show::Servers,
            "TENANTS" => Show::Tenants,
            "SHARDS" => Show::Shards,
            "STATS" => Show::Stats,
            "CONFIG" => Show::Config,
            "VERSION" => Show::Version,
            "HELP" => Show::Help,
            _ => return Err(unknown(text)),
        }),
        ["PAUSE"] => Command::Pause(None),
        ["PAUSE", _] => Command::Pause(Some(tenant(1)?)),
        ["RESUME"] => Command::Resume(None),
        ["SUSPEND", "TENANT", _] => Command::SuspendTenant(tenant(2)?),
        ["RESUME", "TENANT", _] => Command::ResumeTenant(tenant(2)?),
        ["RESUME", _] => Command::Resume(Some(tenant(1)?)),
        ["KILL", _] => Command::Kill(tenant(1)?),
        ["RELOAD"] => Command::Reload,
        ["SHUTDOWN"] => Command::Shutdown,
        _ => return Err(unknown(text)),
    };
    Ok(cmd)
}

fn tenant_arg(word: Option<&str>) -> Result<String, String> {
    let w = word.unwrap_or_default();
    let name = w
        .strip_prefix('"')
        .and_then(|w| w.strip_suffix('"'))
        .unwrap_or(w);
    if valid_tenant_name(name) {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "{w:?} is not a tenant name (1-63 characters of a-z, A-Z, 0-9, _ and -)"
        ))
    }
}

fn unknown(text: &str) -> String {
    format!(
        "unknown admin command {text:?}; the console knows: {}",
        COMMANDS.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_in_any_case_with_optional_semicolon() {
        assert_eq!(parse("show pools;"), Ok(Command::Show(Show::Pools)));
        assert_eq!(parse("  SHOW   Stats "), Ok(Command::Show(Show::Stats)));
        assert_eq!(parse("pause"), Ok(Command::Pause(None)));
        assert_eq!(parse("PAUSE acme"), Ok(Command::Pause(Some("acme".into()))));
        assert_eq!(
            parse("resume \"acme\""),
            Ok(Command::Resume(Some("acme".into())))
        );
        assert_eq!(
            parse("suspend tenant acme"),
            Ok(Command::SuspendTenant("acme".into()))
        );
        assert_eq!(
            parse("RESUME TENANT acme"),
            Ok(Command::ResumeTenant("acme".into()))
        );
        assert_eq!(parse("kill acme"), Ok(Command::Kill("acme".into())));
        assert_eq!(parse("reload"), Ok(Command::Reload));
        assert_eq!(parse("SHUTDOWN;"), Ok(Command::Shutdown));
    }

    #[test]
    fn unknown_commands_list_what_exists() {
        let e = parse("SHOW DATABASES").expect_err("unknown");
        assert!(
            e.contains("SHOW POOLS") && e.contains("SUSPEND TENANT"),
            "{e}"
        );
        assert!(parse("DROP TABLE x").is_err());
        assert!(parse("KILL").is_err());
        assert!(
            parse("KILL a;b")
                .expect_err("bad name")
                .contains("not a tenant name")
        );
    }
}
