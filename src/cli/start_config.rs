//! `replog start --config FILE`: a TOML file holding `replog start`'s flags, one key per
//! flag, spelled as the flag's long name (`data-dir = "/var/lib/replog"`). Flags given on
//! the command line override the file. `examples/node.toml` documents every key.
//!
//! The file is turned into the flags it stands for, appended to the command line, so that
//! clap checks a value from the file exactly as it checks the same flag typed by hand,
//! and a new flag needs nothing here but its line in [`KEYS`] (a test fails until it has
//! one). The file's shape (known keys, TOML types) is checked here first, and each value
//! on its own through clap, so that an error names the file and the key.

use clap::parser::ValueSource;
use clap::Command;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The TOML type a key takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Integer,
    /// A name that may be a number: a string, or an integer.
    Name,
    String,
    /// A flag without a value: `true` gives it; `false` is its default.
    Boolean,
    /// A repeatable flag: an array of strings, each given once.
    Strings,
    /// A comma-separated flag: a string, or an array of strings joined with commas.
    CommaList,
}

impl Kind {
    fn expected(self) -> &'static str {
        match self {
            Kind::Integer => "an integer",
            Kind::Name => "a string or an integer",
            Kind::String => "a string",
            Kind::Boolean => "true or false",
            Kind::Strings => "an array of strings",
            Kind::CommaList => "a string or an array of strings",
        }
    }
}

/// Every `replog start` flag's key (its long name) and type.
const KEYS: &[(&str, Kind)] = &[
    ("id", Kind::Name),
    ("addr", Kind::String),
    ("listen", Kind::String),
    ("peers", Kind::CommaList),
    ("join", Kind::CommaList),
    ("leader", Kind::Boolean),
    ("learner", Kind::Boolean),
    ("data-dir", Kind::String),
    ("cluster", Kind::String),
    ("cluster-id", Kind::String),
    ("cluster-secret-file", Kind::Strings),
    ("stop-on-stdin-eof", Kind::Boolean),
    ("scheduling", Kind::String),
    ("segment-bytes", Kind::Integer),
    ("log-cache-bytes", Kind::Integer),
    ("retain-entries", Kind::Integer),
    ("retain-bytes", Kind::Integer),
    ("log-format", Kind::String),
    ("metrics-addr", Kind::String),
    ("read-lease", Kind::Boolean),
    ("client-token-file", Kind::String),
    ("tls-cert", Kind::String),
    ("tls-key", Kind::String),
    ("tls-ca", Kind::String),
];

/// The flag that names the file: not a key of the file itself.
const CONFIG_FLAG: &str = "config";

/// `args` (a whole command line, program name first) with the flags of `replog start
/// --config FILE`'s file appended, except those the command line gives itself. Any other
/// command line, or one clap refuses, is returned as it is, for clap to report on.
pub fn expand(command: Command, args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let Ok(matches) = command.clone().try_get_matches_from(&args) else {
        return Ok(args);
    };
    let Some(("start", given)) = matches.subcommand() else {
        return Ok(args);
    };
    let Some(path) = given.get_one::<PathBuf>(CONFIG_FLAG) else {
        return Ok(args);
    };
    let start = command
        .find_subcommand("start")
        .ok_or("replog has no start command")?;
    let on_command_line = |long: &str| {
        start
            .get_arguments()
            .find(|arg| arg.get_long() == Some(long))
            .is_some_and(|arg| {
                given.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine)
            })
    };
    let flags = file_flags(start, path, &on_command_line)?;
    Ok(args.into_iter().chain(flags).collect())
}

/// The flags `path` stands for, leaving out those `skip` names; each checked by clap.
fn file_flags(
    start: &Command,
    path: &Path,
    skip: &dyn Fn(&str) -> bool,
) -> Result<Vec<OsString>, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("--config {shown}: cannot read it: {error}"))?;
    let table: toml::Table = text
        .parse()
        .map_err(|error| format!("--config {shown} is not valid TOML: {error}"))?;
    let mut flags = Vec::new();
    for (key, value) in &table {
        let kind = kind_of(key).map_err(|problem| format!("{shown}: {problem}"))?;
        let these = flags_for(key, kind, value).ok_or_else(|| {
            format!(
                "{shown}: `{key}` must be {}, not {}",
                kind.expected(),
                type_name(value)
            )
        })?;
        check_with_clap(start, path, &these)
            .map_err(|problem| format!("{shown}: `{key}` = {value}: {problem}"))?;
        // Checked even when overridden: a bad file is refused whatever the flags.
        if !skip(key) {
            flags.extend(these);
        }
    }
    Ok(flags)
}

/// The key's type, or an error naming the unknown key (and the key meant, if it is near).
fn kind_of(key: &str) -> Result<Kind, String> {
    if let Some(&(_, kind)) = KEYS.iter().find(|(known, _)| *known == key) {
        return Ok(kind);
    }
    let hint = KEYS
        .iter()
        .map(|(known, _)| *known)
        .find(|known| *known == key.replace('_', "-") || edit_distance(known, key) <= 2)
        .map_or(String::new(), |known| format!(" (did you mean `{known}`?)"));
    Err(format!(
        "unknown key `{key}`{hint}; the keys are `replog start`'s flags: {}",
        KEYS.iter()
            .map(|(known, _)| *known)
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// The command-line flags for `key = value`, or `None` if `value` is not of `kind`.
fn flags_for(key: &str, kind: Kind, value: &toml::Value) -> Option<Vec<OsString>> {
    let flag = |text: &str| OsString::from(format!("--{key}={text}"));
    let strings = |value: &toml::Value| -> Option<Vec<String>> {
        value
            .as_array()?
            .iter()
            .map(|item| item.as_str().map(str::to_string))
            .collect()
    };
    match (kind, value) {
        (Kind::Integer | Kind::Name, toml::Value::Integer(number)) => {
            Some(vec![flag(&number.to_string())])
        }
        (Kind::Name, toml::Value::String(text)) => Some(vec![flag(text)]),
        (Kind::String | Kind::CommaList, toml::Value::String(text)) => Some(vec![flag(text)]),
        (Kind::Boolean, toml::Value::Boolean(true)) => Some(vec![format!("--{key}").into()]),
        (Kind::Boolean, toml::Value::Boolean(false)) => Some(Vec::new()),
        (Kind::Strings, toml::Value::Array(_)) => {
            Some(strings(value)?.iter().map(|text| flag(text)).collect())
        }
        (Kind::CommaList, toml::Value::Array(_)) => Some(vec![flag(&strings(value)?.join(","))]),
        _ => None,
    }
}

/// What clap says of `flags` on their own, as the reason only (no usage hints).
fn check_with_clap(start: &Command, path: &Path, flags: &[OsString]) -> Result<(), String> {
    let mut args: Vec<OsString> = vec!["replog start".into(), "--config".into(), path.into()];
    args.extend(flags.iter().cloned());
    match start.clone().try_get_matches_from(args) {
        Ok(_) => Ok(()),
        // A key that needs others (`tls-ca` needs `tls-cert`): the whole command line
        // is checked once every key is in, and clap names what is missing then.
        Err(error) if error.kind() == clap::error::ErrorKind::MissingRequiredArgument => Ok(()),
        Err(error) => {
            // The first paragraph: the reason and any possible values, not the usage.
            let rendered = error.render().to_string();
            let reason: Vec<&str> = rendered
                .lines()
                .take_while(|line| !line.trim().is_empty())
                .map(str::trim)
                .collect();
            let reason = reason.join(" ");
            Err(reason
                .strip_prefix("error: ")
                .unwrap_or(&reason)
                .to_string())
        }
    }
}

fn type_name(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

/// Levenshtein distance, for suggesting the key a typo meant.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, a_char) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, b_char) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(a_char != *b_char);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// Whether `action` takes the flag the way `kind` gives it.
#[cfg(test)]
fn fits(kind: Kind, action: &clap::ArgAction) -> bool {
    use clap::ArgAction;
    match kind {
        Kind::Boolean => matches!(action, ArgAction::SetTrue),
        Kind::Strings => matches!(action, ArgAction::Append),
        Kind::Integer | Kind::Name | Kind::String | Kind::CommaList => {
            matches!(action, ArgAction::Set)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use replog_node::identity::NodeName;

    fn start_command() -> Command {
        crate::Cli::command()
            .find_subcommand("start")
            .expect("replog start")
            .clone()
    }

    fn example_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/node.toml")
    }

    /// `replog start ARGS` after [`expand`], parsed: the start command's matches.
    fn parsed(args: &[&str]) -> Result<clap::ArgMatches, String> {
        let mut line: Vec<OsString> = vec!["replog".into(), "start".into()];
        line.extend(args.iter().map(OsString::from));
        let expanded = expand(crate::Cli::command(), line)?;
        let mut matches = crate::Cli::command()
            .try_get_matches_from(expanded)
            .map_err(|error| error.to_string())?;
        let (_, start) = matches.remove_subcommand().expect("a subcommand");
        Ok(start)
    }

    fn write_config(tag: &str, text: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("replog-config-{tag}-{}.toml", std::process::id()));
        std::fs::write(&path, text).expect("write the config file");
        path
    }

    #[test]
    fn every_start_flag_has_a_config_key_of_its_kind() {
        let start = start_command();
        for arg in start.get_arguments() {
            let Some(long) = arg.get_long() else {
                continue;
            };
            if long == CONFIG_FLAG || long == "help" {
                continue;
            }
            let kind = KEYS
                .iter()
                .find(|(key, _)| *key == long)
                .map(|(_, kind)| *kind)
                .unwrap_or_else(|| panic!("--{long} has no key in KEYS (and examples/node.toml)"));
            assert!(
                fits(kind, arg.get_action()),
                "--{long} is {:?} in clap but {kind:?} in KEYS",
                arg.get_action()
            );
        }
        for (key, _) in KEYS {
            assert!(
                start.get_arguments().any(|arg| arg.get_long() == Some(key)),
                "KEYS has `{key}`, which is no flag of replog start"
            );
        }
    }

    #[test]
    fn the_example_file_documents_every_key_and_replog_start_accepts_it() {
        let path = example_path();
        let text = std::fs::read_to_string(&path).expect("examples/node.toml");
        let start = parsed(&["--config", &path.display().to_string()]).expect("accepted");
        assert_eq!(
            start.get_one::<NodeName>("id").map(NodeName::as_str),
            Some("node1")
        );
        assert_eq!(
            start.get_one::<String>("peers").map(String::as_str),
            Some("node1=127.0.0.1:7001,node2=127.0.0.1:7002,node3=127.0.0.1:7003")
        );
        // The keys without a default are there as `# key = example`: with those lines
        // uncommented the file must hold every key, and be accepted still.
        let uncommented: String = text
            .lines()
            .map(|line| {
                let rest = line.strip_prefix("# ").unwrap_or(line);
                let is_key = KEYS
                    .iter()
                    .any(|(key, _)| rest.starts_with(&format!("{key} = ")));
                if is_key {
                    rest
                } else {
                    line
                }
            })
            .map(|line| format!("{line}\n"))
            .collect();
        let table: toml::Table = uncommented.parse().expect("examples/node.toml is TOML");
        for (key, _) in KEYS {
            assert!(table.contains_key(*key), "examples/node.toml lacks `{key}`");
        }
        let all = write_config("example-uncommented", &uncommented);
        parsed(&["--config", &all.display().to_string()]).expect("accepted uncommented");
        let _ = std::fs::remove_file(all);
    }

    #[test]
    fn a_flag_on_the_command_line_overrides_the_file() {
        let path = write_config(
            "override",
            "id = 2\ncluster = \"from-file\"\nsegment-bytes = 8192\n\
             cluster-secret-file = [\"a\", \"b\"]\n",
        );
        let config = path.display().to_string();
        let start = parsed(&[
            "--config",
            &config,
            "--segment-bytes",
            "16384",
            "--cluster-secret-file",
            "c",
        ])
        .expect("accepted");
        assert_eq!(start.get_one::<u64>("segment_bytes"), Some(&16384));
        let secrets: Vec<&PathBuf> = start
            .get_many::<PathBuf>("cluster_secret_file")
            .expect("secret files")
            .collect();
        assert_eq!(secrets, [&PathBuf::from("c")], "the flags replace the list");
        assert_eq!(
            start.get_one::<NodeName>("id").map(NodeName::as_str),
            Some("2")
        );
        assert_eq!(
            start.get_one::<String>("cluster").map(String::as_str),
            Some("from-file")
        );
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_misspelt_key_is_refused_naming_the_key_and_the_file() {
        let path = write_config("typo", "id = 1\nsegmnet-bytes = 8192\n");
        let config = path.display().to_string();
        let problem = parsed(&["--config", &config]).unwrap_err();
        assert!(problem.contains(&config), "{problem}");
        assert!(problem.contains("unknown key `segmnet-bytes`"), "{problem}");
        assert!(
            problem.contains("did you mean `segment-bytes`?"),
            "{problem}"
        );
        std::fs::write(&path, "data_dir = \"x\"\n").unwrap();
        let problem = parsed(&["--config", &config]).unwrap_err();
        assert!(problem.contains("did you mean `data-dir`?"), "{problem}");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_value_of_the_wrong_type_is_refused_naming_the_key_and_the_type() {
        let path = write_config("type", "id = 1\nsegment-bytes = \"big\"\n");
        let config = path.display().to_string();
        let problem = parsed(&["--config", &config]).unwrap_err();
        assert_eq!(
            problem,
            format!("{config}: `segment-bytes` must be an integer, not a string")
        );
        std::fs::write(&path, "id = true\n").unwrap();
        let problem = parsed(&["--config", &config]).unwrap_err();
        assert_eq!(
            problem,
            format!("{config}: `id` must be a string or an integer, not a boolean")
        );
        std::fs::write(&path, "id = \"node 1\"\n").unwrap();
        let problem = parsed(&["--config", &config]).unwrap_err();
        assert!(
            problem.contains("it must be 1 to 64 characters"),
            "{problem}"
        );
        std::fs::write(&path, "id = 1\ncluster-secret-file = \"s\"\n").unwrap();
        let problem = parsed(&["--config", &config]).unwrap_err();
        assert!(
            problem.contains("`cluster-secret-file` must be an array of strings, not a string"),
            "{problem}"
        );
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_value_clap_refuses_is_refused_naming_the_key_and_the_reason() {
        let path = write_config("value", "id = 1\nsegment-bytes = 100\n");
        let config = path.display().to_string();
        let problem = parsed(&["--config", &config]).unwrap_err();
        assert!(
            problem.starts_with(&format!("{config}: `segment-bytes` = 100: ")),
            "{problem}"
        );
        assert!(
            problem.contains("below the minimum segment size"),
            "{problem}"
        );
        let overridden = parsed(&["--config", &config, "--segment-bytes", "8192"]);
        assert!(
            overridden.is_err(),
            "a bad file is refused even where a flag overrides it"
        );
        std::fs::write(&path, "id = 1\nscheduling = \"fast\"\n").unwrap();
        let problem = parsed(&["--config", &config]).unwrap_err();
        assert!(problem.contains("`scheduling` = \"fast\""), "{problem}");
        assert!(problem.contains("batch, normal"), "{problem}");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_missing_or_garbled_file_is_refused_naming_it() {
        let missing = std::env::temp_dir().join("replog-config-that-does-not-exist.toml");
        let shown = missing.display().to_string();
        let problem = parsed(&["--config", &shown]).unwrap_err();
        assert!(
            problem.starts_with(&format!("--config {shown}: cannot read it")),
            "{problem}"
        );
        let path = write_config("garbled", "id = \n");
        let config = path.display().to_string();
        let problem = parsed(&["--config", &config]).unwrap_err();
        assert!(
            problem.starts_with(&format!("--config {config} is not valid TOML")),
            "{problem}"
        );
        let _ = std::fs::remove_file(path);
    }
}
