//! Facts about how this binary was built.

/// `AWS_LC_SYS_NO_JITTER_ENTROPY` as the build saw it: `Some("1")` from
/// `.cargo/config.toml`, another value when someone set it on purpose, and
/// `None` when a build path lost it (`src/main.rs` refuses to compile then).
pub const JITTER_ENTROPY_SETTING: Option<&str> = option_env!("AWS_LC_SYS_NO_JITTER_ENTROPY");

#[cfg(test)]
mod tests {
    #[test]
    fn test_builds_see_the_jitter_entropy_setting_of_cargo_config() {
        // cargo test reads .cargo/config.toml like every other build path;
        // a value other than 1 means someone overrode it for this build.
        assert_eq!(super::JITTER_ENTROPY_SETTING, Some("1"));
    }
}
