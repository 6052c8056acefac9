//! Run a stage natively, with `cargo test`, against an in-process host.
//!
//! [`Harness`] calls [`Stage::init`] and [`Stage::process`] as the daemon would,
//! while every host capability the stage uses ([`emit`](crate::emit),
//! [`state`](crate::state), [`objects`](crate::objects), logging) goes to an
//! in-memory host that the test can seed and inspect. `wasi:nn` is not available
//! here (see [`crate::nn`]). Only on targets other than `wasm32`.
//!
//! # Example
//!
//! ```
//! use weft_sdk::testing::Harness;
//! use weft_sdk::{Config, Item, Stage, StageError, state};
//!
//! /// Counts items across batches in `state`.
//! struct Tally;
//!
//! impl Stage for Tally {
//!     fn init(_: Config) -> Result<Self, String> {
//!         Ok(Tally)
//!     }
//!
//!     fn process(&mut self, batch: Vec<Item>) -> Result<Vec<Item>, StageError> {
//!         let seen: u64 = state::get_json("seen")?.unwrap_or(0) + batch.len() as u64;
//!         state::set_json("seen", &seen)?;
//!         Ok(vec![Item::json(&seen)?])
//!     }
//! }
//!
//! let mut harness = Harness::<Tally>::builder().state_json("seen", &40u64).build().unwrap();
//! harness.process(vec![Item::text("a"), Item::text("b")])?;
//! assert_eq!(harness.state_json::<u64>("seen"), Some(42));
//! # Ok::<(), StageError>(())
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::host::native::{SharedHost, TestHost, object_id, with_host};
use crate::log::Level;
use crate::{Config, Item, Stage, StageError};

/// One [`emit::progress`](crate::emit::progress) call, as recorded by the harness.
///
/// # Example
///
/// ```
/// let p = weft_sdk::testing::Progress { done: 1, total: Some(4), message: "chunk 1/4".into() };
/// assert_eq!(p.total, Some(4));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Units done so far.
    pub done: u64,
    /// Units in all, when known.
    pub total: Option<u64>,
    /// The human-readable message.
    pub message: String,
}

/// One log record, as recorded by the harness.
///
/// # Example
///
/// ```
/// use weft_sdk::log::Level;
///
/// let r = weft_sdk::testing::LogRecord { level: Level::Info, message: "ready".into() };
/// assert_eq!(r.level, Level::Info);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// The severity.
    pub level: Level,
    /// The formatted message.
    pub message: String,
}

/// A stage instance wired to its own in-memory host.
///
/// Everything the stage emits or logs accumulates until [`Harness::clear_events`];
/// state and objects persist for the harness's lifetime, like the daemon's store.
///
/// # Example
///
/// ```
/// use weft_sdk::testing::Harness;
/// use weft_sdk::{Config, Item, Stage, StageError};
///
/// struct Echo;
///
/// impl Stage for Echo {
///     fn init(_: Config) -> Result<Self, String> {
///         Ok(Echo)
///     }
///
///     fn process(&mut self, batch: Vec<Item>) -> Result<Vec<Item>, StageError> {
///         weft_sdk::info!("echo {}", batch.len());
///         Ok(batch)
///     }
/// }
///
/// let mut harness = Harness::<Echo>::new(&[]);
/// let out = harness.process(vec![Item::text("hi")]).unwrap();
/// assert_eq!(out, vec![Item::text("hi")]);
/// assert_eq!(harness.logs()[0].message, "echo 1");
/// ```
pub struct Harness<S> {
    stage: S,
    host: SharedHost,
}

impl<S: Stage> Harness<S> {
    /// Builds the stage with `config`, panicking with the stage's message when
    /// `init` fails: the usual start of a test.
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
    /// let harness = weft_sdk::testing::Harness::<Echo>::new(&[("size", "8")]);
    /// # let _ = harness;
    /// ```
    #[track_caller]
    pub fn new(config: &[(&str, &str)]) -> Self {
        match Self::try_new(config) {
            Ok(harness) => harness,
            Err(message) => panic!("stage init failed: {message}"),
        }
    }

    /// Builds the stage with `config`, returning `init`'s error: for testing that
    /// a stage rejects bad config.
    ///
    /// # Example
    ///
    /// ```
    /// # use weft_sdk::{Config, Item, Stage, StageError};
    /// struct NeedsModel;
    ///
    /// impl Stage for NeedsModel {
    ///     fn init(config: Config) -> Result<Self, String> {
    ///         config.parse::<String>("model")?;
    ///         Ok(NeedsModel)
    ///     }
    /// #   fn process(&mut self, b: Vec<Item>) -> Result<Vec<Item>, StageError> { Ok(b) }
    /// }
    ///
    /// let err = weft_sdk::testing::Harness::<NeedsModel>::try_new(&[]).unwrap_err();
    /// assert!(err.contains("`model` is required"));
    /// ```
    pub fn try_new(config: &[(&str, &str)]) -> Result<Self, String> {
        Self::builder().config(config).build()
    }

    /// Starts a [`HarnessBuilder`], to seed state or objects before `init` runs.
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
    ///     .config(&[("lang", "fr")])
    ///     .state("cursor", b"row-7")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(harness.state("cursor").unwrap(), b"row-7");
    /// ```
    pub fn builder() -> HarnessBuilder<S> {
        HarnessBuilder {
            config: Vec::new(),
            host: TestHost::default(),
            stage: std::marker::PhantomData,
        }
    }

    /// Calls [`Stage::process`] with this harness's host installed.
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
    /// let mut harness = weft_sdk::testing::Harness::<Echo>::new(&[]);
    /// assert!(harness.process(Vec::new()).unwrap().is_empty());
    /// ```
    pub fn process(&mut self, batch: Vec<Item>) -> Result<Vec<Item>, StageError> {
        let stage = &mut self.stage;
        with_host(&self.host, || stage.process(batch))
    }
}

impl<S> Harness<S> {
    /// The stage value, to check fields it keeps between batches.
    ///
    /// # Example
    ///
    /// ```
    /// # use weft_sdk::{Config, Item, Stage, StageError};
    /// struct Seen(usize);
    /// # impl Stage for Seen {
    /// #     fn init(_: Config) -> Result<Self, String> { Ok(Seen(0)) }
    /// #     fn process(&mut self, b: Vec<Item>) -> Result<Vec<Item>, StageError> { self.0 += b.len(); Ok(b) }
    /// # }
    /// let mut harness = weft_sdk::testing::Harness::<Seen>::new(&[]);
    /// harness.process(vec![Item::text("a")]).unwrap();
    /// assert_eq!(harness.stage().0, 1);
    /// ```
    pub fn stage(&self) -> &S {
        &self.stage
    }

    /// The stage value, mutably, to set up a situation directly.
    ///
    /// # Example
    ///
    /// ```
    /// # use weft_sdk::{Config, Item, Stage, StageError};
    /// struct Seen(usize);
    /// # impl Stage for Seen {
    /// #     fn init(_: Config) -> Result<Self, String> { Ok(Seen(0)) }
    /// #     fn process(&mut self, b: Vec<Item>) -> Result<Vec<Item>, StageError> { self.0 += b.len(); Ok(b) }
    /// # }
    /// let mut harness = weft_sdk::testing::Harness::<Seen>::new(&[]);
    /// harness.stage_mut().0 = 10;
    /// ```
    pub fn stage_mut(&mut self) -> &mut S {
        &mut self.stage
    }

    /// Every item sent with [`emit::partial`](crate::emit::partial), in order.
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
    /// let harness = weft_sdk::testing::Harness::<Echo>::new(&[]);
    /// assert!(harness.partials().is_empty());
    /// ```
    pub fn partials(&self) -> Vec<Item> {
        self.host.borrow().partials.clone()
    }

    /// Every [`emit::progress`](crate::emit::progress) call, in order.
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
    /// let harness = weft_sdk::testing::Harness::<Echo>::new(&[]);
    /// assert!(harness.progress().is_empty());
    /// ```
    pub fn progress(&self) -> Vec<Progress> {
        self.host.borrow().progress.clone()
    }

    /// Every log record, from `init` on, in order.
    ///
    /// # Example
    ///
    /// ```
    /// # use weft_sdk::{Config, Item, Stage, StageError};
    /// struct Loud;
    ///
    /// impl Stage for Loud {
    ///     fn init(_: Config) -> Result<Self, String> {
    ///         weft_sdk::warn!("starting");
    ///         Ok(Loud)
    ///     }
    /// #   fn process(&mut self, b: Vec<Item>) -> Result<Vec<Item>, StageError> { Ok(b) }
    /// }
    ///
    /// let harness = weft_sdk::testing::Harness::<Loud>::new(&[]);
    /// assert_eq!(harness.logs()[0].level, weft_sdk::log::Level::Warn);
    /// ```
    pub fn logs(&self) -> Vec<LogRecord> {
        self.host.borrow().logs.clone()
    }

    /// Forgets recorded partials, progress and logs (state and objects stay), so
    /// the next batch's events can be checked alone.
    ///
    /// # Example
    ///
    /// ```
    /// # use weft_sdk::{Config, Item, Stage, StageError};
    /// # struct Echo;
    /// # impl Stage for Echo {
    /// #     fn init(_: Config) -> Result<Self, String> { weft_sdk::info!("init"); Ok(Echo) }
    /// #     fn process(&mut self, b: Vec<Item>) -> Result<Vec<Item>, StageError> { Ok(b) }
    /// # }
    /// let harness = weft_sdk::testing::Harness::<Echo>::new(&[]);
    /// harness.clear_events();
    /// assert!(harness.logs().is_empty());
    /// ```
    pub fn clear_events(&self) {
        let mut host = self.host.borrow_mut();
        host.partials.clear();
        host.progress.clear();
        host.logs.clear();
    }

    /// The raw bytes the stage stored under `key`.
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
    /// let harness = weft_sdk::testing::Harness::<Echo>::new(&[]);
    /// assert_eq!(harness.state("totals"), None);
    /// ```
    pub fn state(&self, key: &str) -> Option<Vec<u8>> {
        self.host.borrow().state.get(key).cloned()
    }

    /// The JSON value stored under `key`, decoded; panics when it does not decode
    /// as `T`, since that is a failed test.
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
    /// let harness = weft_sdk::testing::Harness::<Echo>::new(&[]);
    /// harness.set_state("n", b"3");
    /// assert_eq!(harness.state_json::<u32>("n"), Some(3));
    /// ```
    #[track_caller]
    pub fn state_json<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let bytes = self.state(key)?;
        match serde_json::from_slice(&bytes) {
            Ok(value) => Some(value),
            Err(e) => panic!(
                "state `{key}` is not JSON for {}: {e}",
                std::any::type_name::<T>()
            ),
        }
    }

    /// The bincode value stored under `key`, decoded; panics when it does not
    /// decode as `T`.
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
    ///     .state_bincode("totals", &(1u64, 2u64))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(harness.state_bincode::<(u64, u64)>("totals"), Some((1, 2)));
    /// ```
    #[track_caller]
    pub fn state_bincode<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let bytes = self.state(key)?;
        match bincode::serde::decode_from_slice(&bytes, bincode::config::standard()) {
            Ok((value, _read)) => Some(value),
            Err(e) => panic!(
                "state `{key}` is not bincode for {}: {e}",
                std::any::type_name::<T>()
            ),
        }
    }

    /// All state, by key.
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
    /// let harness = weft_sdk::testing::Harness::<Echo>::new(&[]);
    /// assert!(harness.state_entries().is_empty());
    /// ```
    pub fn state_entries(&self) -> BTreeMap<String, Vec<u8>> {
        self.host.borrow().state.clone()
    }

    /// Writes state between batches, as another instance of the stage might have.
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
    /// let harness = weft_sdk::testing::Harness::<Echo>::new(&[]);
    /// harness.set_state("k", b"v");
    /// assert_eq!(harness.state("k").unwrap(), b"v");
    /// ```
    pub fn set_state(&self, key: &str, value: impl AsRef<[u8]>) {
        let value = value.as_ref().to_vec();
        self.host.borrow_mut().state.insert(key.to_string(), value);
    }

    /// The bytes of object `id`, if the stage (or the test) stored it.
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
    /// let harness = weft_sdk::testing::Harness::<Echo>::new(&[]);
    /// let id = harness.put_object(b"blob");
    /// assert_eq!(harness.object(&id).unwrap(), b"blob");
    /// ```
    pub fn object(&self, id: &str) -> Option<Vec<u8>> {
        self.host.borrow().objects.get(id).cloned()
    }

    /// All objects, by id.
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
    /// let harness = weft_sdk::testing::Harness::<Echo>::new(&[]);
    /// assert!(harness.objects().is_empty());
    /// ```
    pub fn objects(&self) -> BTreeMap<String, Vec<u8>> {
        self.host.borrow().objects.clone()
    }

    /// Stores an object the stage can then fetch with
    /// [`objects::get`](crate::objects::get); returns its id.
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
    /// let harness = weft_sdk::testing::Harness::<Echo>::new(&[]);
    /// let id = harness.put_object("weights");
    /// assert!(harness.objects().contains_key(&id));
    /// ```
    pub fn put_object(&self, data: impl AsRef<[u8]>) -> String {
        let data = data.as_ref();
        let id = object_id(data);
        self.host
            .borrow_mut()
            .objects
            .insert(id.clone(), data.to_vec());
        id
    }
}

impl<S> fmt::Debug for Harness<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Harness")
            .field("stage", &std::any::type_name::<S>())
            .field("host", &self.host.borrow())
            .finish()
    }
}

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
    config: Vec<(String, String)>,
    host: TestHost,
    stage: std::marker::PhantomData<S>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{emit, objects, state};

    /// Exercises every host capability once.
    struct Busy;

    impl Stage for Busy {
        fn init(config: Config) -> Result<Self, String> {
            crate::info!("init with {} entries", config.len());
            Ok(Busy)
        }

        fn process(&mut self, batch: Vec<Item>) -> Result<Vec<Item>, StageError> {
            for item in &batch {
                emit::partial(item.clone());
                let id = objects::put(&item.payload);
                state::set(&id, b"seen");
            }
            emit::progress(batch.len() as u64, None, "done");
            Ok(batch)
        }
    }

    #[test]
    fn harnesses_on_one_thread_do_not_share_a_host() {
        let mut a = Harness::<Busy>::new(&[("x", "1")]);
        let b = Harness::<Busy>::new(&[]);
        a.process(vec![Item::text("one")]).unwrap();
        assert_eq!(a.partials().len(), 1);
        assert_eq!(a.objects().len(), 1);
        assert_eq!(a.state_entries().len(), 1);
        assert!(b.partials().is_empty() && b.objects().is_empty());
        assert_eq!(b.logs().len(), 1, "only b's own init log");
        // Outside a harness, calls go to the thread's default host, not to `a`.
        emit::partial(Item::text("stray"));
        assert_eq!(a.partials().len(), 1);
    }

    #[test]
    fn progress_and_logs_are_recorded_in_order() {
        let mut h = Harness::<Busy>::new(&[]);
        h.process(vec![Item::text("a"), Item::text("b")]).unwrap();
        assert_eq!(
            h.progress(),
            vec![Progress {
                done: 2,
                total: None,
                message: "done".into()
            }]
        );
        assert_eq!(h.logs()[0].message, "init with 0 entries");
        h.clear_events();
        assert!(h.progress().is_empty() && h.logs().is_empty());
        assert_eq!(h.objects().len(), 2, "objects survive clear_events");
    }

    #[test]
    fn seeded_objects_are_visible_to_the_stage() {
        let h = Harness::<Busy>::builder().object(b"seed").build().unwrap();
        let id = h.objects().into_keys().next().unwrap();
        let fetched = with_host(&h.host, || objects::get(&id));
        assert_eq!(fetched.unwrap(), b"seed");
        assert_eq!(id, h.put_object(b"seed"), "content-addressed");
    }
}
