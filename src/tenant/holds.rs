//! Operator holds on tenants, set from the admin console: `PAUSE` (new transactions wait
//! until `RESUME`) and `SUSPEND TENANT` (new connections refused until `RESUME TENANT`).
//! They live beside the configuration and survive a reload.

use std::collections::HashSet;
use std::sync::Arc;

use dashmap::DashSet;
use tokio::sync::watch;

/// What is paused.
#[derive(Debug, Default, Clone)]
pub(crate) struct Paused {
    pub(crate) all: bool,
    pub(crate) tenants: HashSet<Arc<str>>,
}

impl Paused {
    pub(crate) fn holds(&self, tenant: &str) -> bool {
        self.all || self.tenants.contains(tenant)
    }

    fn any(&self) -> bool {
        self.all || !self.tenants.is_empty()
    }
}

/// One session's view of the pauses, asked before each transaction. While nothing is paused
/// it reads only the version the `PAUSE`/`RESUME` commands bump (a shared load, where a look
/// at the pauses themselves takes their lock).
pub(crate) struct PauseView {
    rx: watch::Receiver<Paused>,
    /// Something was paused when the view last looked.
    any: bool,
}

impl PauseView {
    pub(crate) fn holds(&mut self, tenant: &str) -> bool {
        // Err only if the sender is gone, i.e. the proxy is: nothing changes any more.
        if self.rx.has_changed().unwrap_or(false) {
            self.any = self.rx.borrow_and_update().any();
        }
        self.any && self.rx.borrow().holds(tenant)
    }

    /// Waits while `tenant` is paused.
    pub(crate) async fn until_resumed(&mut self, tenant: &str) {
        // Err only if the sender is gone, i.e. the proxy is: nothing to wait for.
        let _ = self.rx.wait_for(|p| !p.holds(tenant)).await;
        self.any = self.rx.borrow_and_update().any();
    }
}

pub(crate) struct Holds {
    paused: watch::Sender<Paused>,
    suspended: DashSet<Arc<str>>,
}

impl Default for Holds {
    fn default() -> Self {
        Holds {
            paused: watch::Sender::new(Paused::default()),
            suspended: DashSet::new(),
        }
    }
}

impl Holds {
    /// `PAUSE` (all tenants when `tenant` is `None`).
    pub(crate) fn pause(&self, tenant: Option<&str>) {
        self.paused.send_modify(|p| match tenant {
            None => p.all = true,
            Some(t) => {
                p.tenants.insert(Arc::from(t));
            }
        });
    }

    /// `RESUME`: lifts `PAUSE` (all of them when `tenant` is `None`); false if nothing was
    /// paused.
    pub(crate) fn resume(&self, tenant: Option<&str>) -> bool {
        let mut lifted = false;
        self.paused.send_modify(|p| match tenant {
            None => {
                lifted = p.all || !p.tenants.is_empty();
                *p = Paused::default();
            }
            Some(t) => lifted = p.tenants.remove(t),
        });
        lifted
    }

    pub(crate) fn is_paused(&self, tenant: &str) -> bool {
        self.paused.borrow().holds(tenant)
    }

    /// A session's view of the pauses.
    pub(crate) fn subscribe(&self) -> PauseView {
        let rx = self.paused.subscribe();
        let any = rx.borrow().any();
        PauseView { rx, any }
    }

    pub(crate) fn suspend(&self, tenant: &str) -> bool {
        self.suspended.insert(Arc::from(tenant))
    }

    pub(crate) fn unsuspend(&self, tenant: &str) -> bool {
        self.suspended.remove(tenant).is_some()
    }

    pub(crate) fn is_suspended(&self, tenant: &str) -> bool {
        self.suspended.contains(tenant)
    }
}
