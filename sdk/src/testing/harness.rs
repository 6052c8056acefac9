//! The [`Harness`]: a stage instance on its own in-memory host, and running it.

use std::fmt;

use super::HarnessBuilder;
use crate::host::native::{SharedHost, TestHost, with_host};
use crate::{Item, Stage, StageError};

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
    pub(super) stage: S,
    pub(super) host: SharedHost,
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
}

impl<S> fmt::Debug for Harness<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Harness")
            .field("stage", &std::any::type_name::<S>())
            .field("host", &self.host.borrow())
            .finish()
    }
}
