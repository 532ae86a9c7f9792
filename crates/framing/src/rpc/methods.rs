//! The table of RPC methods: the only place where a method's names and arguments are written.
//!
//! Each entry gives the [`Request`] variant with its argument fields (kind and the name that
//! documentation and error messages use), the JSON method name (and any other names the
//! decoder accepts), and the text alias verb. Everything else is derived from it: [`Method`]
//! and its names, the [`Request`] enum, building a request from its argument list and listing
//! its arguments for encoding. Decoders look a name up here once and match on [`Method`] from
//! then on, never on strings.
//!
//! Adding a method takes an entry here and, if it answers something new, a reply type in
//! `reply.rs`; then an arm in the server's dispatch and a call in the client.

use std::borrow::Cow;

use super::error::{ErrorCode, WireError};

/// The kinds an argument can have, named in the table; each is the type of the field that
/// holds it in [`Request`].
pub(crate) mod kind {
    use std::borrow::Cow;

    /// A string: a lot id, a plate. JSON strings, or one whitespace-free text field.
    pub type Text<'a> = Cow<'a, str>;

    /// A token: a string on the wire, [`crate::Secret`] in the request, so that it never
    /// shows in a log of the request.
    pub type Secret<'a> = crate::Secret<'a>;

    /// An argument kind: made from the argument's text, and made to own it.
    pub(crate) trait Arg<'a>: From<Cow<'a, str>> + AsRef<str> {
        /// The same kind owning its text.
        type Static;
        /// Takes ownership of the text.
        fn owned(self) -> Self::Static;
    }

    impl<'a> Arg<'a> for Text<'a> {
        type Static = Text<'static>;
        fn owned(self) -> Self::Static {
            Cow::Owned(self.into_owned())
        }
    }

    impl<'a> Arg<'a> for Secret<'a> {
        type Static = Secret<'static>;
        fn owned(self) -> Self::Static {
            self.into_owned()
        }
    }
}

impl AsRef<str> for crate::Secret<'_> {
    fn as_ref(&self) -> &str {
        self.expose()
    }
}

/// Declares [`Method`] and [`Request`] from the table below. An entry is
/// `Variant { field: Kind "wireName", .. } = "jsonName" | "otherName", verb "VERB";`, the
/// field list left out for a method without arguments.
macro_rules! rpc_methods {
    ($(
        $(#[doc = $doc:literal])*
        $variant:ident $({ $( $(#[doc = $field_doc:literal])* $field:ident: $kind:ident $wire:literal ),* $(,)? })?
            = $name:literal $(| $alias:literal)*, verb $verb:literal;
    )+) => {
        /// An RPC method: what a [`Request`] asks for, without its arguments.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Method {
            $( $(#[doc = $doc])* $variant, )+
        }

        impl Method {
            /// Every method, in the table's order (the order `docs/protocol.md` lists them in).
            pub const ALL: &'static [Method] = &[$(Method::$variant),+];

            /// The JSON method name, as sent.
            pub fn name(self) -> &'static str {
                match self { $(Method::$variant => $name,)+ }
            }

            /// Other JSON names the decoder accepts for this method (never sent).
            pub fn aliases(self) -> &'static [&'static str] {
                match self { $(Method::$variant => &[$($alias),*],)+ }
            }

            /// The text alias verb; text requests match it case-insensitively.
            pub fn verb(self) -> &'static str {
                match self { $(Method::$variant => $verb,)+ }
            }

            /// The arguments' names in order, as documentation and error messages give them.
            pub fn arg_names(self) -> &'static [&'static str] {
                match self { $(Method::$variant => &[$($($wire),*)?],)+ }
            }
        }

        /// One RPC request: a [`Method`] with its arguments, as the peer sent them (lot ids
        /// and plates are validated by the server, against its lots and the plate rules).
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Request<'a> {
            $(
                $(#[doc = $doc])*
                $variant $({ $( $(#[doc = $field_doc])* $field: kind::$kind<'a> ),* })?,
            )+
        }

        impl<'a> Request<'a> {
            /// The method this request calls.
            pub fn method(&self) -> Method {
                match self { $(Request::$variant { .. } => Method::$variant,)+ }
            }

            /// Calls `f` with the arguments in order, without allocating.
            pub fn with_args<R>(&self, f: impl FnOnce(&[&str]) -> R) -> R {
                match self {
                    $(Request::$variant $({ $($field),* })? => f(&[$($($field.as_ref()),*)?]),)+
                }
            }

            /// The same request owning its arguments.
            pub fn into_owned(self) -> Request<'static> {
                match self {
                    $(
                        Request::$variant $({ $($field),* })? => Request::$variant
                            $({ $($field: kind::Arg::owned($field)),* })?,
                    )+
                }
            }

            /// Builds the request for `method` from its arguments, which must be as many as
            /// the method takes. `called` is the name the peer used, for the error message.
            pub(crate) fn from_args(
                method: Method,
                called: &str,
                args: Vec<Cow<'a, str>>,
            ) -> Result<Self, WireError> {
                if args.len() != method.arg_names().len() {
                    return Err(WireError::new(
                        ErrorCode::BadArgs,
                        format!(
                            "{called} takes {}, got {} argument(s)",
                            method.usage(),
                            args.len()
                        ),
                    ));
                }
                // The count was checked, so every field finds its argument.
                let mut args = args.into_iter();
                #[allow(unused_mut, unused_variables)]
                let mut next = move || args.next().unwrap_or_default();
                Ok(match method {
                    $(Method::$variant => Request::$variant $({ $($field: next().into()),* })?,)+
                })
            }
        }
    };
}

rpc_methods! {
    /// `getLots` / `LOTS`: every lot with its counts.
    GetLots = "getLots", verb "LOTS";
    /// `getAvailability` / `AVAIL`: free spaces in one lot.
    GetAvailability {
        /// The lot asked about.
        lot: Text "lotId",
    } = "getAvailability", verb "AVAIL";
    /// `reserve` / `RESERVE`: hold a space for a plate.
    Reserve {
        /// The lot to reserve in.
        lot: Text "lotId",
        /// The vehicle's plate.
        plate: Text "plate",
    } = "reserve", verb "RESERVE";
    /// `cancel` / `CANCEL`: release a plate's reservation.
    Cancel {
        /// The lot the reservation is in.
        lot: Text "lotId",
        /// The vehicle's plate.
        plate: Text "plate",
    } = "cancel", verb "CANCEL";
    /// `PING`: liveness check (JSON also accepts `ping`).
    Ping = "PING" | "ping", verb "PING";
    /// `auth` / `AUTH`: authenticate the connection with a key's token.
    Auth {
        /// The key's token.
        token: Secret "token",
    } = "auth", verb "AUTH";
}

impl Method {
    /// The method called `name` in JSON, if any (names are case-sensitive).
    pub fn from_name(name: &str) -> Option<Method> {
        Method::ALL
            .iter()
            .copied()
            .find(|method| method.name() == name || method.aliases().contains(&name))
    }

    /// The method whose text verb is `verb`, in any case.
    pub fn from_verb(verb: &str) -> Option<Method> {
        Method::ALL
            .iter()
            .copied()
            .find(|method| method.verb().eq_ignore_ascii_case(verb))
    }

    /// The argument list as documented, e.g. `[lotId, plate]`.
    pub fn usage(self) -> String {
        format!("[{}]", self.arg_names().join(", "))
    }
}

/// The JSON method names, for an "unknown method" message.
pub(crate) fn names() -> String {
    let names: Vec<&str> = Method::ALL.iter().map(|method| method.name()).collect();
    names.join(", ")
}

/// The text verbs, for an "unknown command" message.
pub(crate) fn verbs() -> String {
    let verbs: Vec<&str> = Method::ALL.iter().map(|method| method.verb()).collect();
    verbs.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_and_verb_finds_its_method() {
        for &method in Method::ALL {
            assert_eq!(Method::from_name(method.name()), Some(method));
            assert_eq!(Method::from_verb(method.verb()), Some(method));
            assert_eq!(
                Method::from_verb(&method.verb().to_ascii_lowercase()),
                Some(method)
            );
            for alias in method.aliases() {
                assert_eq!(Method::from_name(alias), Some(method));
            }
        }
        assert_eq!(Method::from_name("getlots"), None);
        assert_eq!(Method::from_name("LOTS"), None);
        assert_eq!(Method::from_verb("getLots"), None);
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = Method::ALL
            .iter()
            .flat_map(|method| {
                std::iter::once(method.name()).chain(method.aliases().iter().copied())
            })
            .collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count);
        let mut verbs: Vec<String> = Method::ALL
            .iter()
            .map(|method| method.verb().to_ascii_uppercase())
            .collect();
        verbs.sort_unstable();
        verbs.dedup();
        assert_eq!(verbs.len(), Method::ALL.len());
    }

    #[test]
    fn requests_know_their_method_and_arguments() {
        let request = Request::Reserve {
            lot: "A".into(),
            plate: "P".into(),
        };
        assert_eq!(request.method(), Method::Reserve);
        assert_eq!(request.with_args(|args| args.join(" ")), "A P");
        assert_eq!(Method::Reserve.usage(), "[lotId, plate]");
        assert_eq!(Request::Ping.with_args(|args| args.len()), 0);
        let auth = Request::Auth {
            token: crate::Secret::new("t0k"),
        };
        assert!(!format!("{auth:?}").contains("t0k"));
        assert_eq!(auth.with_args(|args| args.join(" ")), "t0k");
        assert_eq!(auth.clone().into_owned(), auth);
        let built = Request::from_args(Method::Reserve, "reserve", vec!["A".into(), "P".into()]);
        assert_eq!(built, Ok(request));
        let short = Request::from_args(Method::Cancel, "cancel", vec!["A".into()]);
        assert_eq!(
            short.unwrap_err().detail,
            "cancel takes [lotId, plate], got 1 argument(s)"
        );
    }
}
