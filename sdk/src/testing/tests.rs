use super::{Harness, Progress};
use crate::host::native::with_host;
use crate::{Config, Item, Stage, StageError, emit, objects, state};

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
