//! Facts about how this binary was built.

/// `AWS_LC_SYS_NO_JITTER_ENTROPY` as the build saw it: `Some("1")` from
/// `.cargo/config.toml`, another value when someone set it on purpose, and
/// `None` when a build path lost it (`src/main.rs` refuses to compile then).
pub const JITTER_ENTROPY_SETTING: Option<&str> = option_env!("AWS_LC_SYS_NO_JITTER_ENTROPY");

#[cfg(test)]
mod tests {
    #[test]
    fn cargo_config_turns_jitter_entropy_off_for_every_build() {
        let config = include_str!("../.cargo/config.toml");
        assert!(
            config
                .lines()
                .any(|l| l.trim() == "AWS_LC_SYS_NO_JITTER_ENTROPY = \"1\""),
            "{config}"
        );
        // This build read it too (or someone set the variable on purpose).
        assert!(super::JITTER_ENTROPY_SETTING.is_some());
    }
}
