//! `pgwardenctl policy new NAME`: a policy crate from the template embedded in this binary
//! (`template/`): Cargo.toml, `.cargo/config.toml` (the `wasm-component-ld` linker), a
//! working `src/lib.rs` built on the default rules with native tests, a README and a
//! `.gitignore`.
//!
//! The crate depends on the SDK (`pgwarden-policy`) and the default rules
//! (`pgwarden-policy-default`) by path: those of `--sdk`, else of the pgwarden checkout the
//! crate is created in. Outside a checkout and without `--sdk`, the paths are explained
//! placeholders. The crate has its own `[workspace]` table, so it builds wherever it lives.

use std::fs;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

/// Arguments of `policy new`.
#[derive(clap::Args, Debug)]
pub struct NewArgs {
    /// The policy's name: the package name and the name its metadata reports (ASCII letters,
    /// digits, `-` and `_`, starting with a letter).
    #[arg(value_name = "NAME")]
    name: String,
    /// The directory to create (default: `./NAME`); it must not exist.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The SDK to depend on: `policies/sdk` of a pgwarden checkout, or the checkout itself.
    /// Default: the pgwarden checkout the new crate is created in, if any.
    #[arg(long, value_name = "PATH")]
    sdk: Option<PathBuf>,
}

const CARGO_TOML: &str = include_str!("template/Cargo.toml.tmpl");
const CARGO_CONFIG: &str = include_str!("template/cargo-config.toml.tmpl");
const LIB_RS: &str = include_str!("template/lib.rs.tmpl");
const README: &str = include_str!("template/README.md.tmpl");
const GITIGNORE: &str = include_str!("template/gitignore.tmpl");

/// The files of a new crate: path inside it, template.
const FILES: [(&str, &str); 5] = [
    ("Cargo.toml", CARGO_TOML),
    (".cargo/config.toml", CARGO_CONFIG),
    ("src/lib.rs", LIB_RS),
    ("README.md", README),
    (".gitignore", GITIGNORE),
];

const SDK_PACKAGE: &str = "pgwarden-policy";
const DEFAULT_PACKAGE: &str = "pgwarden-policy-default";

/// Placeholder dependency paths, when no SDK was found.
const PLACEHOLDER_SDK: &str = "PATH/TO/pgwarden/policies/sdk";
const PLACEHOLDER_DEFAULT: &str = "PATH/TO/pgwarden/policies/default";
const PLACEHOLDER_NOTE: &str = "\
# pgwardenctl found no pgwarden checkout around this crate, and no --sdk was given: the two
# `PATH/TO/pgwarden` paths below are placeholders. Point them at `policies/sdk` and
# `policies/default` of a pgwarden source tree (a `git = ...` dependency on pgwarden's
# repository works too), or create the crate again with `pgwardenctl policy new NAME --sdk PATH`.
";

/// Run `policy new`.
pub fn run(args: &NewArgs) -> anyhow::Result<ExitCode> {
    if let Some(problem) = crate_name_problem(&args.name) {
        anyhow::bail!(
            "{:?} is not a valid policy crate name: {problem}",
            args.name
        );
    }
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.symlink_metadata().is_ok() {
        anyhow::bail!(
            "{} already exists; choose another directory with --dir (pgwardenctl never \
             writes into an existing one)",
            dir.display()
        );
    }
    let Some(dir_name) = dir.file_name().map(PathBuf::from) else {
        anyhow::bail!("--dir {}: does not name a new directory", dir.display());
    };
    let given_sdk = args.sdk.as_deref().map(given_sdk).transpose()?;

    let parent = match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let parent = parent
        .canonicalize()
        .with_context(|| format!("resolving {}", parent.display()))?;
    let crate_dir = parent.join(dir_name);
    let checkout = find_checkout(&parent);
    let sdk = given_sdk.or_else(|| checkout.clone());

    let lib = args.name.replace('-', "_");
    let (sdk_path, default_path, sdk_note) = match &sdk {
        Some(sdk) => (
            dependency_path(&crate_dir, &sdk.sdk),
            dependency_path(&crate_dir, &sdk.default),
            String::new(),
        ),
        None => (
            PLACEHOLDER_SDK.to_string(),
            PLACEHOLDER_DEFAULT.to_string(),
            PLACEHOLDER_NOTE.to_string(),
        ),
    };
    let type_name = type_name(&args.name);
    let vars: [(&str, &str); 7] = [
        ("package", &args.name),
        ("name", &args.name),
        ("lib", &lib),
        ("type", &type_name),
        ("sdk_path", &sdk_path),
        ("default_path", &default_path),
        ("sdk_note", &sdk_note),
    ];

    fs::create_dir(&crate_dir).with_context(|| format!("creating {}", crate_dir.display()))?;
    for (file, template) in FILES {
        let path = crate_dir.join(file);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::write(&path, fill(template, &vars))
            .with_context(|| format!("writing {}", path.display()))?;
    }

    println!(
        "created the policy crate {} in {}",
        args.name,
        crate_dir.display()
    );
    for (file, _) in FILES {
        println!("  {file}");
    }
    match &sdk {
        Some(sdk) => println!(
            "SDK: {} (path dependency {sdk_path:?}; {})",
            sdk.sdk.display(),
            sdk.found_by
        ),
        None => eprintln!(
            "warning: no pgwarden checkout around {} and no --sdk: Cargo.toml depends on the \
             SDK through placeholder paths; edit them, or create the crate again with --sdk PATH",
            crate_dir.display()
        ),
    }
    if let Some(checkout) = &checkout {
        println!(
            "note: the crate is inside the pgwarden workspace at {}, but has its own \
             [workspace] table, so it builds on its own. scripts/build-policies builds only \
             workspace members: to have it built there, delete that table and add the crate \
             to `members` in {}",
            checkout.root.display(),
            checkout.root.join("Cargo.toml").display()
        );
    }
    println!();
    println!("next:");
    println!("  cd {}", dir.display());
    println!("  cargo test");
    println!("  cargo build --target wasm32-unknown-unknown --release");
    println!("  pgwardenctl policy check target/wasm32-unknown-unknown/release/{lib}.wasm");
    Ok(ExitCode::SUCCESS)
}

/// Why `name` cannot name a policy crate, if it cannot.
pub fn crate_name_problem(name: &str) -> Option<String> {
    const MAX_LEN: usize = 64;
    const KEYWORDS: [&str; 52] = [
        "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn",
        "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref",
        "return", "self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use",
        "where", "while", "async", "await", "dyn", "abstract", "become", "box", "do", "final",
        "macro", "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen",
        "union",
    ];
    const RESERVED: [&str; 7] = [
        "test",
        "std",
        "core",
        "alloc",
        "proc_macro",
        "pgwarden_policy",
        "pgwarden_policy_default",
    ];
    let Some(first) = name.chars().next() else {
        return Some("it is empty".into());
    };
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Some(format!(
            "{bad:?} is not allowed (only ASCII letters, digits, `-` and `_`)"
        ));
    }
    if !first.is_ascii_alphabetic() {
        return Some("it must start with an ASCII letter".into());
    }
    if name.len() > MAX_LEN {
        return Some(format!("it is longer than {MAX_LEN} characters"));
    }
    let lib = name.replace('-', "_");
    if KEYWORDS.contains(&lib.as_str()) {
        return Some("it is a Rust keyword".into());
    }
    if RESERVED.contains(&lib.as_str()) {
        return Some("it is the name of a crate the policy needs or Rust provides".into());
    }
    None
}

/// The policy type's name: `NAME` in CamelCase, suffixed `Rules` when that would clash with
/// a name the template uses.
fn type_name(name: &str) -> String {
    const TAKEN: [&str; 22] = [
        "Policy",
        "ClusterView",
        "Config",
        "Decision",
        "DefaultPolicy",
        "Event",
        "Fence",
        "Info",
        "Lease",
        "Level",
        "Member",
        "Race",
        "Role",
        "Wait",
        "PgwardenPolicyExport",
        "Default",
        "Option",
        "Result",
        "String",
        "Vec",
        "Some",
        "None",
    ];
    let camel: String = name
        .split(['-', '_'])
        .flat_map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase())
                .into_iter()
                .chain(chars)
        })
        .collect();
    if TAKEN.contains(&camel.as_str()) {
        format!("{camel}Rules")
    } else {
        camel
    }
}

/// `template` with every `{{key}}` of `vars` replaced.
fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    vars.iter()
        .fold(template.to_string(), |text, (key, value)| {
            text.replace(&format!("{{{{{key}}}}}"), value)
        })
}

/// The SDK and default-rules crates the new crate depends on.
#[derive(Clone, Debug)]
struct Sdk {
    /// The pgwarden checkout, when the SDK is part of one.
    root: PathBuf,
    /// `policies/sdk`.
    sdk: PathBuf,
    /// `policies/default`.
    default: PathBuf,
    /// How it was found, for the report.
    found_by: &'static str,
}

/// The pgwarden checkout `dir` is in, if any: the nearest ancestor (itself included) with
/// `policies/sdk` and `policies/default` holding the SDK and the default rules.
fn find_checkout(dir: &Path) -> Option<Sdk> {
    dir.ancestors()
        .find_map(|root| checkout_at(root, "found in the pgwarden checkout around the new crate"))
}

fn checkout_at(root: &Path, found_by: &'static str) -> Option<Sdk> {
    let sdk = root.join("policies/sdk");
    let default = root.join("policies/default");
    (is_package(&sdk, SDK_PACKAGE) && is_package(&default, DEFAULT_PACKAGE)).then(|| Sdk {
        root: root.to_path_buf(),
        sdk,
        default,
        found_by,
    })
}

/// Whether `dir` holds the Cargo package `name`.
fn is_package(dir: &Path, name: &str) -> bool {
    let wanted = format!("name = \"{name}\"");
    fs::read_to_string(dir.join("Cargo.toml"))
        .is_ok_and(|manifest| manifest.lines().any(|line| line.trim() == wanted))
}

/// The SDK named by `--sdk`: a checkout, or its `policies/sdk` (the default rules beside it).
fn given_sdk(path: &Path) -> anyhow::Result<Sdk> {
    let dir = path
        .canonicalize()
        .with_context(|| format!("--sdk {}", path.display()))?;
    if let Some(sdk) = checkout_at(&dir, "given with --sdk") {
        return Ok(sdk);
    }
    if is_package(&dir, SDK_PACKAGE) {
        if let Some(sdk) = dir
            .parent()
            .and_then(Path::parent)
            .and_then(|root| checkout_at(root, "given with --sdk"))
        {
            return Ok(sdk);
        }
        anyhow::bail!(
            "--sdk {}: the SDK is there, but not {DEFAULT_PACKAGE} beside it ({}), which the \
             template builds on",
            path.display(),
            dir.with_file_name("default").display()
        );
    }
    anyhow::bail!(
        "--sdk {}: neither a pgwarden checkout nor its policies/sdk (no {SDK_PACKAGE} package)",
        path.display()
    )
}

/// How the crate at `crate_dir` names `target` in a path dependency: relative when they
/// share an ancestor below the filesystem root, else absolute.
fn dependency_path(crate_dir: &Path, target: &Path) -> String {
    let relative = relative_path(crate_dir, target);
    let path = match relative {
        Some(relative) => relative,
        None => target.to_path_buf(),
    };
    path.display().to_string()
}

/// `to` relative to the directory `from` (both absolute and without `..`), when they share
/// more than the root.
fn relative_path(from: &Path, to: &Path) -> Option<PathBuf> {
    let from: Vec<Component<'_>> = from.components().collect();
    let to: Vec<Component<'_>> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    if common <= 1 {
        return None;
    }
    let mut path = PathBuf::new();
    for _ in common..from.len() {
        path.push("..");
    }
    for component in &to[common..] {
        path.push(component);
    }
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_names_are_checked() {
        assert_eq!(crate_name_problem("zone-aware-2"), None);
        assert_eq!(crate_name_problem("my_policy"), None);
        for bad in [
            "",
            "2fast",
            "-x",
            "my policy",
            "été",
            "fn",
            "test",
            "pgwarden-policy",
        ] {
            assert!(crate_name_problem(bad).is_some(), "{bad:?} was accepted");
        }
        assert!(crate_name_problem(&"a".repeat(65)).is_some());
    }

    #[test]
    fn type_names_are_camel_case_and_avoid_the_templates_names() {
        assert_eq!(type_name("zone-aware"), "ZoneAware");
        assert_eq!(type_name("my_policy2"), "MyPolicy2");
        assert_eq!(type_name("policy"), "PolicyRules");
        assert_eq!(type_name("race"), "RaceRules");
    }

    #[test]
    fn every_placeholder_is_filled() {
        let vars = [
            ("package", "p"),
            ("name", "p"),
            ("lib", "p"),
            ("type", "P"),
            ("sdk_path", "s"),
            ("default_path", "d"),
            ("sdk_note", ""),
        ];
        for (file, template) in FILES {
            let text = fill(template, &vars);
            assert!(!text.contains("{{"), "{file} keeps a placeholder");
        }
        assert!(fill(CARGO_TOML, &vars).contains("name = \"p\""));
    }

    #[test]
    fn dependency_paths_are_relative_below_a_common_ancestor() {
        assert_eq!(
            relative_path(
                Path::new("/work/main/policies/mine"),
                Path::new("/work/main/policies/sdk")
            ),
            Some(PathBuf::from("../sdk"))
        );
        assert_eq!(
            relative_path(Path::new("/tmp/x/mine"), Path::new("/tmp/x/mine/sdk")),
            Some(PathBuf::from("sdk"))
        );
        assert_eq!(
            relative_path(Path::new("/tmp/mine"), Path::new("/work/policies/sdk")),
            None
        );
        assert_eq!(
            dependency_path(Path::new("/tmp/mine"), Path::new("/work/policies/sdk")),
            "/work/policies/sdk"
        );
    }
}
