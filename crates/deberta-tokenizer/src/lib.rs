//! DeBERTa-v2/v3 tokenizers (work in progress).
