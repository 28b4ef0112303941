//! What makes a model fit to draft for another: the same adapter (drafts and
//! verification share buffers' device), the same vocabulary (a draft token must mean the
//! same text to the target) and room for the target's context.

use std::sync::Arc;

use super::SpeculationError;
use crate::engine::Engine;
use crate::tokenizer::Tokenizer;

/// Refuses `draft` as a drafter for `target`, naming the first difference: another
/// adapter, the first token whose text differs (or that only one of them has), or a
/// shorter context.
pub fn check_draft_model(
    target: &Engine,
    target_tokens: &Tokenizer,
    draft: &Engine,
    draft_tokens: &Tokenizer,
) -> Result<(), SpeculationError> {
    if !Arc::ptr_eq(&target.gpu, &draft.gpu) {
        return Err(SpeculationError::OtherAdapter {
            draft: draft.gpu.adapter_name(),
            target: target.gpu.adapter_name(),
        });
    }
    let ids = target_tokens
        .vocab_size()
        .max(draft_tokens.vocab_size())
        .max(target.config.vocab_size as usize)
        .max(draft.config.vocab_size as usize);
    let text = |t: &Tokenizer, rows: u32, id: u32| match t.token_text(id) {
        Some(s) => format!("{s:?}"),
        // Rows of the output matrix beyond the tokenizer's list (padding).
        None if id < rows => "an unnamed padding row".to_string(),
        None => "no such token".to_string(),
    };
    for id in 0..ids as u32 {
        let a = text(target_tokens, target.config.vocab_size, id);
        let b = text(draft_tokens, draft.config.vocab_size, id);
        if a != b {
            return Err(SpeculationError::Vocabulary {
                id,
                draft: b,
                target: a,
            });
        }
    }
    if draft.context_size() < target.context_size() {
        return Err(SpeculationError::DraftContext {
            draft: draft.context_size(),
            target: target.context_size(),
        });
    }
    Ok(())
}
