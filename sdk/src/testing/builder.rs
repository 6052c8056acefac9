//! The [`HarnessBuilder`]: config, state and objects set up before `init` runs.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use serde::Serialize;

use super::Harness;
use crate::host::native::{TestHost, object_id, with_host};
use crate::{Config, Stage};

/// Sets up a [`Harness`]: config, and state and objects present before `init`.
///
/// # Example
///
/// ```
/// # use weft_sdk::{Config, Item, Stage, StageError};
/// # struct Echo;
/// # impl Stage for Echo {
/// #     fn init(_: Config) -> Result<Self, String> { Ok(Echo) }
/// #     fn process(&mut self, b: Vec<Item>) -> Result<Vec<Item>, StageError> { Ok(b) }
/// # }
/// let harness = weft_sdk::testing::Harness::<Echo>::builder()
///     .config(&[("size", "4")])
///     .state_json("totals", &serde_json::json!({ "items": 3 }))
///     .object(b"prompt template")
///     .build()?;
/// assert_eq!(harness.objects().len(), 1);
/// # Ok::<(), String>(())
/// ```
pub struct HarnessBuilder<S> {
    pub(super) config: Vec<(String, String)>,
    pub(super) host: TestHost,
    pub(super) stage: std::marker::PhantomData<S>,
}

impl<S: Stage> HarnessBuilder<S> {
    /// Adds config entries, after any added before.
    ///
    /// # Example
    ///
    /// ```
    /// # use weft_sdk::{Config, Item, Stage, StageError};
    /// # struct Echo;
    /// # impl Stage for Echo {
    /// #     fn init(_: Config) -> Result<Self, String> { Ok(Echo) }
    /// #     fn process(&mut self, b: Vec<Item>) -> Result<Vec<Item>, StageError> { Ok(b) }
    /// # }
    /// let builder = weft_sdk::testing::Harness::<Echo>::builder().config(&[("a", "1"), ("b", "2")]);
    /// # let _ = builder;
    /// ```
    #[must_use]
    pub fn config(mut self, entries: &[(&str, &str)]) -> Self {
        self.config
            .extend(entries.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }

    /// Seeds raw state under `key`.
    ///
    /// # Example
    ///
    /// ```
    /// # use weft_sdk::{Config, Item, Stage, StageError};
    /// # struct Echo;
    /// # impl Stage for Echo {
    /// #     fn init(_: Config) -> Result<Self, String> { Ok(Echo) }
    /// #     fn process(&mut self, b: Vec<Item>) -> Result<Vec<Item>, StageError> { Ok(b) }
    /// # }
    /// let builder = weft_sdk::testing::Harness::<Echo>::builder().state("cursor", b"7");
    /// # let _ = builder;
    /// ```
    #[must_use]
    pub fn state(mut self, key: &str, value: impl AsRef<[u8]>) -> Self {
        let value = value.as_ref().to_vec();
        self.host.state.insert(key.to_string(), value);
        self
    }

    /// Seeds state under `key` as [`state::set_json`](crate::state::set_json) would.
    ///
    /// # Example
    ///
    /// ```
    /// # use weft_sdk::{Config, Item, Stage, StageError};
    /// # struct Echo;
    /// # impl Stage for Echo {
    /// #     fn init(_: Config) -> Result<Self, String> { Ok(Echo) }
    /// #     fn process(&mut self, b: Vec<Item>) -> Result<Vec<Item>, StageError> { Ok(b) }
    /// # }
    /// let builder = weft_sdk::testing::Harness::<Echo>::builder().state_json("n", &5u32);
    /// # let _ = builder;
    /// ```
    #[must_use]
    #[track_caller]
    pub fn state_json<T: Serialize + ?Sized>(self, key: &str, value: &T) -> Self {
        let bytes = serde_json::to_vec(value).expect("test state must encode as JSON");
        self.state(key, bytes)
    }

    /// Seeds state under `key` as [`state::set_bincode`](crate::state::set_bincode)
    /// would.
    ///
    /// # Example
    ///
    /// ```
    /// # use weft_sdk::{Config, Item, Stage, StageError};
    /// # struct Echo;
    /// # impl Stage for Echo {
    /// #     fn init(_: Config) -> Result<Self, String> { Ok(Echo) }
    /// #     fn process(&mut self, b: Vec<Item>) -> Result<Vec<Item>, StageError> { Ok(b) }
    /// # }
    /// let builder = weft_sdk::testing::Harness::<Echo>::builder().state_bincode("n", &5u32);
    /// # let _ = builder;
    /// ```
    #[must_use]
    #[track_caller]
    pub fn state_bincode<T: Serialize + ?Sized>(self, key: &str, value: &T) -> Self {
        let bytes = bincode::serde::encode_to_vec(value, bincode::config::standard())
            .expect("test state must encode with bincode");
        self.state(key, bytes)
    }

    /// Seeds an object; read its id back with [`Harness::objects`], or compute it
    /// by calling [`Harness::put_object`] later instead.
    ///
    /// # Example
    ///
    /// ```
    /// # use weft_sdk::{Config, Item, Stage, StageError};
    /// # struct Echo;
    /// # impl Stage for Echo {
    /// #     fn init(_: Config) -> Result<Self, String> { Ok(Echo) }
    /// #     fn process(&mut self, b: Vec<Item>) -> Result<Vec<Item>, StageError> { Ok(b) }
    /// # }
    /// let builder = weft_sdk::testing::Harness::<Echo>::builder().object(b"vocab");
    /// # let _ = builder;
    /// ```
    #[must_use]
    pub fn object(mut self, data: impl AsRef<[u8]>) -> Self {
        let data = data.as_ref();
        self.host.objects.insert(object_id(data), data.to_vec());
        self
    }

    /// Calls [`Stage::init`] with the config, on the seeded host.
    ///
    /// # Example
    ///
    /// ```
    /// # use weft_sdk::{Config, Item, Stage, StageError};
    /// # struct Echo;
    /// # impl Stage for Echo {
    /// #     fn init(_: Config) -> Result<Self, String> { Ok(Echo) }
    /// #     fn process(&mut self, b: Vec<Item>) -> Result<Vec<Item>, StageError> { Ok(b) }
    /// # }
    /// let harness = weft_sdk::testing::Harness::<Echo>::builder().build();
    /// assert!(harness.is_ok());
    /// ```
    pub fn build(self) -> Result<Harness<S>, String> {
        let host = Rc::new(RefCell::new(self.host));
        let config = Config::from(self.config);
        let stage = with_host(&host, || S::init(config))?;
        Ok(Harness { stage, host })
    }
}

impl<S> fmt::Debug for HarnessBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HarnessBuilder")
            .field("stage", &std::any::type_name::<S>())
            .field("config", &self.config)
            .field("host", &self.host)
            .finish()
    }
}
