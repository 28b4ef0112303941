//! `wisp chat`: an interactive conversation on stdin/stdout, with the KV cache reused from
//! one turn to the next. Works with piped stdin too (one message per line).

use std::cell::RefCell;
use std::io::{BufRead, Write};

use anyhow::{Context, Result};
use clap::Args;
use wisp_core::generate::{ChatSession, ChatTurn, GenerateOptions, Generator};

use crate::common::{self, DeviceArgs, Interrupt, Model, ModelArgs, SamplingArgs};
use crate::speculation::{self, SpeculationArgs};

const HELP: &str = "commands: /clear (forget the conversation), /regen (answer the last message again), \
/exit (or end of input); Ctrl-C stops a reply, or exits at the prompt";

#[derive(Debug, Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// A system message, kept across /clear. Default: the model's (its authors' chat
    /// template's; `wisp info -m MODEL` shows it), else none. `--system ""` sends an empty one.
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,

    /// The most tokens per reply (-1: until the model ends its turn or the context is full).
    #[arg(short = 'n', long = "n-predict", value_name = "N", default_value_t = -1,
          allow_negative_numbers = true)]
    pub n_predict: i64,

    #[command(flatten)]
    pub device: DeviceArgs,

    #[command(flatten)]
    pub sampling: SamplingArgs,

    #[command(flatten)]
    pub speculation: SpeculationArgs,
}

pub fn run(mut args: ChatArgs) -> Result<()> {
    let speculation = args.speculation.options()?;
    args.device.self_draft_layers = args.speculation.self_draft_layers();
    let overrides = args.sampling.overrides()?;
    let model = Model::open(&args.model)?;
    let defaults = common::model_defaults(&model);
    let (sampling, sampler) = common::resolve_sampling(&overrides, &defaults)?;
    let tokenizer = model.tokenizer()?;
    let gpu = common::open_gpu(&args.device)?;
    let engine = common::load_engine(&model, gpu.clone(), &args.device, 1)?;
    let draft = speculation::load_draft_model(&args.speculation, gpu, &args.device, 1)?;
    eprintln!("{}", common::describe_sampling(&sampling, &defaults));
    let system = defaults.system_prompt_or(args.system.as_deref());
    let mut generator = Generator::new(engine, tokenizer);
    if let Some((engine, tokenizer)) = draft {
        generator.set_draft_model(engine, tokenizer)?;
    }
    let mut session = ChatSession::new(generator, system);
    let options = GenerateOptions {
        max_tokens: common::max_tokens(args.n_predict),
        sampler,
        stop: args.sampling.stop.clone(),
        ignore_eos: false,
        speculation,
        ..GenerateOptions::default()
    };
    let interrupt = Interrupt::install();
    eprintln!("{HELP}");

    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut line = String::new();
    loop {
        {
            let mut out = std::io::stdout().lock();
            write!(out, "> ")
                .and_then(|()| out.flush())
                .context("writing to stdout")?;
        }
        line.clear();
        if input.read_line(&mut line).context("reading stdin")? == 0 {
            // End of input: finish the prompt's line and leave.
            writeln!(std::io::stdout()).context("writing to stdout")?;
            return Ok(());
        }
        let text = line.trim_end_matches(['\n', '\r']);
        let turn = match handle_line(&mut session, text, &options) {
            Line::Exit => return Ok(()),
            Line::Done => continue,
            Line::Turn(turn) => *turn,
        };
        match turn {
            // A turn that cannot start (e.g. the conversation no longer fits) is reported and
            // the conversation kept as it was; the user can /clear.
            Err(e) => {
                let hint = if matches!(
                    &e,
                    wisp_core::Error::Engine(wisp_core::engine::EngineError::ContextFull { .. })
                ) {
                    " (/clear starts over)"
                } else {
                    ""
                };
                eprintln!("error: {e}{hint}");
            }
            Ok(turn) => {
                stream_reply(turn.with_cancel(&interrupt.cancel), &interrupt)?;
                let kv = session.generator().engine().kv_stats();
                eprintln!(
                    "[KV cache: {} of {} blocks in use, {} free]",
                    kv.used_blocks,
                    kv.blocks,
                    kv.blocks - kv.used_blocks
                );
            }
        }
    }
}

/// What a line of input led to.
enum Line<'s> {
    Exit,
    /// A command that is done, or an empty line.
    Done,
    /// A reply to stream (or the reason it could not start); boxed, as a turn is large.
    Turn(Box<Result<ChatTurn<'s>, wisp_core::Error>>),
}

/// Runs a command (`/clear`, `/regen`, …) or sends `text` as the user's message.
fn handle_line<'s>(
    session: &'s mut ChatSession,
    text: &str,
    options: &GenerateOptions,
) -> Line<'s> {
    match text.trim() {
        "" => Line::Done,
        "/exit" | "/quit" => Line::Exit,
        "/help" => {
            eprintln!("{HELP}");
            Line::Done
        }
        "/clear" => {
            session.clear();
            eprintln!("(conversation cleared)");
            Line::Done
        }
        "/regen" => match session.regenerate(options) {
            Ok(Some(turn)) => Line::Turn(Box::new(Ok(turn))),
            Ok(None) => {
                eprintln!("(nothing to regenerate: send a message first)");
                Line::Done
            }
            Err(e) => Line::Turn(Box::new(Err(e))),
        },
        command if command.starts_with('/') => {
            eprintln!("unknown command {command}; {HELP}");
            Line::Done
        }
        _ => Line::Turn(Box::new(session.send(text, options))),
    }
}

/// Streams one reply to stdout, then a stats line to stderr. A failure on the device ends
/// the reply (kept, as far as it got) but not the conversation.
fn stream_reply(mut turn: ChatTurn<'_>, interrupt: &Interrupt) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    // Shared with the loop, which stops the reply once stdout is gone.
    let write_error: RefCell<Option<std::io::Error>> = RefCell::new(None);
    let mut on_text = |piece: &str| {
        if write_error.borrow().is_none()
            && let Err(e) = stdout
                .write_all(piece.as_bytes())
                .and_then(|()| stdout.flush())
        {
            *write_error.borrow_mut() = Some(e);
        }
    };
    interrupt.begin();
    let mut failure = None;
    loop {
        match pollster::block_on(turn.next_token(&mut on_text)) {
            Ok(Some(_)) if write_error.borrow().is_none() => {}
            Ok(Some(_)) => {
                // A closed stdout: stop the reply; the error is returned below.
                let _ = turn.cancel(&mut on_text);
                break;
            }
            Ok(None) => break,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    interrupt.end();
    let generation = turn.finish();
    if let Some(e) = write_error.into_inner() {
        return Err(e).context("writing to stdout");
    }
    writeln!(stdout).context("writing to stdout")?;
    drop(stdout);
    if let Some(e) = failure {
        eprintln!("error: {e}");
    }
    let timing = generation.timing;
    let drafts = match generation.speculation {
        Some(s) => format!(
            "; drafts: {} of {} kept, {:.2} tokens per verification",
            s.accepted,
            s.drafted,
            s.mean_accepted_length()
        ),
        None => String::new(),
    };
    eprintln!(
        "[prompt: {} new + {} cached tokens, {:.1} tok/s; reply: {} tokens, {:.1} tok/s; stop: {}{drafts}]",
        generation.n_prefilled,
        generation.n_reused,
        timing.prefill_tokens_per_second(generation.n_prefilled),
        generation.n_generated(),
        timing.decode_tokens_per_second(generation.n_generated()),
        generation.stop_reason
    );
    Ok(())
}
