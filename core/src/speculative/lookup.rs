//! Prompt-lookup decoding (Saxena's "prompt lookup", llama.cpp's `--lookup`): output often
//! repeats spans of its input (code being edited, a document being summarised, names),
//! so the tokens that followed the latest earlier occurrence of the last few tokens are a
//! free guess at the next ones. No second model, no GPU work.

/// The longest n-gram matched.
pub const MAX_NGRAM: usize = 8;

/// Up to `k` tokens that followed the latest earlier occurrence of the last `n` tokens
/// of `context` (the prompt, then the output so far), trying `n` from `ngram` down to 1.
/// Empty when no n-gram recurs.
pub fn propose(context: &[u32], ngram: usize, k: usize) -> Vec<u32> {
    let len = context.len();
    if k == 0 || len < 2 {
        return Vec::new();
    }
    for n in (1..=ngram.min(len - 1)).rev() {
        let pattern = &context[len - n..];
        // Latest first: recent text predicts best. `start + n < len`, so at least one
        // token follows the match (it may run into the pattern itself, which proposes a
        // repetition: right for repeated spans).
        if let Some(start) = (0..len - n).rev().find(|&s| &context[s..s + n] == pattern) {
            let from = start + n;
            return context[from..(from + k).min(len)].to_vec();
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::propose;

    #[test]
    fn proposes_what_followed_the_latest_match_of_the_longest_ngram() {
        // "5 6" occurs twice before the end; the later one is followed by 9 9.
        let ctx = [1, 5, 6, 7, 8, 2, 5, 6, 9, 9, 3, 5, 6];
        assert_eq!(propose(&ctx, 3, 2), vec![9, 9]);
        assert_eq!(propose(&ctx, 3, 5), vec![9, 9, 3, 5, 6]);
        // With a trigram match available, it wins over the later bigram.
        let ctx = [4, 5, 6, 7, 1, 5, 6, 8, 4, 5, 6];
        assert_eq!(propose(&ctx, 3, 1), vec![7]);
        assert_eq!(
            propose(&ctx, 2, 1),
            vec![8],
            "bigram only: the latest match"
        );
    }

    #[test]
    fn stops_at_the_end_of_the_context_and_finds_nothing_without_a_match() {
        assert_eq!(propose(&[1, 2, 3, 1], 3, 4), vec![2, 3, 1]);
        assert!(propose(&[1, 2, 3, 4], 3, 4).is_empty());
        assert!(propose(&[7], 3, 4).is_empty());
        assert!(propose(&[1, 2, 1], 3, 0).is_empty());
        // A run of one token proposes more of it.
        assert_eq!(propose(&[3, 3, 3, 3], 2, 3), vec![3]);
        assert_eq!(propose(&[0, 3, 3, 3], 1, 3), vec![3]);
    }
}
