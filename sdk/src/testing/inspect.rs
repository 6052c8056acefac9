//! Reading and seeding the harness's in-memory host: recorded events, state and
//! objects.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;

use super::{Harness, LogRecord, Progress};
use crate::Item;
use crate::host::native::object_id;

impl<S> Harness<S> {
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
