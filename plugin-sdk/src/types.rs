//! Small helpers on the contract's shared types ([`Visibility`], [`SocialIdentity`]).

use crate::{SocialIdentity, Visibility};

impl Visibility {
    /// `Public` when `public` holds, else `Private`: for services that flag a comment as
    /// public (`public`, `IsPublished`) or as private (write `public_if(!private)`).
    ///
    /// ```
    /// # use switchboard_plugin_sdk::Visibility;
    /// assert_eq!(Visibility::public_if(true), Visibility::Public);
    /// assert_eq!(Visibility::public_if(false), Visibility::Private);
    /// ```
    pub fn public_if(public: bool) -> Self {
        if public {
            Visibility::Public
        } else {
            Visibility::Private
        }
    }
}

impl SocialIdentity {
    /// The name to file the person under: the display name if there is one, else the handle,
    /// trimmed; `fallback` (usually the hub's external id) when that is blank or missing.
    ///
    /// ```
    /// # use switchboard_plugin_sdk::SocialIdentity;
    /// let aiko = SocialIdentity {
    ///     external_id: "5001".into(), network: "telegram".into(),
    ///     handle: Some("aiko".into()), display_name: Some(" Aiko Sato ".into()),
    /// };
    /// assert_eq!(aiko.name_or("telegram:5001"), "Aiko Sato");
    /// ```
    pub fn name_or<'a>(&'a self, fallback: &'a str) -> &'a str {
        // A display name that is only blanks counts as given: the handle is not tried then.
        self.display_name
            .as_deref()
            .or(self.handle.as_deref())
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .unwrap_or(fallback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(display_name: Option<&str>, handle: Option<&str>) -> SocialIdentity {
        SocialIdentity {
            external_id: "99".into(),
            network: "x".into(),
            handle: handle.map(str::to_string),
            display_name: display_name.map(str::to_string),
        }
    }

    #[test]
    fn names_fall_back_from_display_name_to_handle_to_the_given_id() {
        assert_eq!(identity(Some("Fan"), Some("fan")).name_or("x:99"), "Fan");
        assert_eq!(identity(None, Some(" fan ")).name_or("x:99"), "fan");
        assert_eq!(identity(None, None).name_or("x:99"), "x:99");
        assert_eq!(identity(Some(" "), Some("fan")).name_or("x:99"), "x:99");
    }

    #[test]
    fn visibility_from_a_flag() {
        assert_eq!(Visibility::public_if(true), Visibility::Public);
        assert_eq!(Visibility::public_if(false), Visibility::Private);
    }
}
