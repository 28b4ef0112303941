//! `wisp fetch`: download known models into the cache and print their paths.

use anyhow::{Result, bail};
use clap::Args;

use crate::model_cache::{self, KNOWN_MODELS, KnownModel};

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Models to fetch, by name or alias (default: the default model). Run
    /// `wisp fetch --list` to see them.
    #[arg(value_name = "MODEL", conflicts_with = "all")]
    pub models: Vec<String>,

    /// Fetch every known model.
    #[arg(long)]
    pub all: bool,

    /// Re-hash files already in the cache and fetch them again if they are damaged.
    #[arg(long)]
    pub verify: bool,

    /// List the known models and whether each is cached, then exit.
    #[arg(long, conflicts_with_all = ["models", "all", "verify"])]
    pub list: bool,
}

pub fn run(args: FetchArgs) -> Result<()> {
    if args.list {
        return list();
    }
    let models: Vec<&KnownModel> = if args.all {
        KNOWN_MODELS.iter().collect()
    } else if args.models.is_empty() {
        vec![model_cache::default_model()]
    } else {
        let mut out = Vec::new();
        for name in &args.models {
            match model_cache::find_known(name) {
                Some(m) => out.push(m),
                None => bail!(
                    "unknown model {name:?}; known models: {}",
                    model_cache::known_names()
                ),
            }
        }
        out
    };
    for model in models {
        let path = model_cache::ensure_known(model, args.verify)?;
        // stdout carries only the paths, so scripts can use `$(wisp fetch)`.
        println!("{}", path.display());
    }
    Ok(())
}

fn list() -> Result<()> {
    println!("cache folder: {}", model_cache::models_dir()?.display());
    for m in KNOWN_MODELS {
        let default = if m.name == model_cache::DEFAULT_MODEL {
            " (default)"
        } else {
            ""
        };
        let state = if model_cache::is_cached(m) {
            "cached"
        } else {
            "not fetched"
        };
        println!("{}{default}", m.name);
        println!("    {}", m.description);
        println!("    aliases: {}", m.aliases.join(", "));
        println!("    file: {} ({} bytes), {state}", m.file_name, m.size);
    }
    Ok(())
}
