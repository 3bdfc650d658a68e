//! The browser's own signals, wired into the core's hooks: `online` / `offline`
//! → network available, `visibilitychange` → app state, `pageshow` of a page
//! restored from the back-forward cache → reconnect now. Absent outside a
//! browser (Node), where nothing is listened to.

use mkondo_sdk::{AppState, Client};
use wasm_bindgen::{prelude::*, JsCast};
use web_sys::{EventTarget, PageTransitionEvent, VisibilityState};

/// One listener: where, for which event, and the closure to keep alive.
type Added = (
    EventTarget,
    &'static str,
    Closure<dyn FnMut(web_sys::Event)>,
);

/// The listeners added for one client; removed by [`Hooks::remove`].
pub(crate) struct Hooks {
    added: Vec<Added>,
}

impl Hooks {
    pub(crate) fn install(client: &Client) -> Option<Hooks> {
        let window = web_sys::window()?;
        let document = window.document();
        let mut hooks = Hooks { added: Vec::new() };
        let target: &EventTarget = window.as_ref();

        let c = client.clone();
        hooks.add(target, "online", move |_| c.set_network_available(true));
        let c = client.clone();
        hooks.add(target, "offline", move |_| c.set_network_available(false));
        let c = client.clone();
        hooks.add(target, "pageshow", move |e| {
            let restored = e
                .dyn_ref::<PageTransitionEvent>()
                .is_some_and(PageTransitionEvent::persisted);
            if restored {
                c.connect();
                c.set_network_available(true);
            }
        });
        if let Some(document) = document {
            let c = client.clone();
            let d = document.clone();
            hooks.add(document.as_ref(), "visibilitychange", move |_| {
                c.set_app_state(match d.visibility_state() {
                    VisibilityState::Hidden => AppState::Background,
                    _ => AppState::Foreground,
                });
            });
        }
        Some(hooks)
    }

    fn add(
        &mut self,
        target: &EventTarget,
        name: &'static str,
        f: impl FnMut(web_sys::Event) + 'static,
    ) {
        let closure = Closure::<dyn FnMut(web_sys::Event)>::new(f);
        if target
            .add_event_listener_with_callback(name, closure.as_ref().unchecked_ref())
            .is_ok()
        {
            self.added.push((target.clone(), name, closure));
        }
    }

    pub(crate) fn remove(self) {
        for (target, name, closure) in self.added {
            let _ =
                target.remove_event_listener_with_callback(name, closure.as_ref().unchecked_ref());
        }
    }
}

/// The app state to start with: background when the page is hidden.
pub(crate) fn initial_app_state() -> AppState {
    let hidden = web_sys::window()
        .and_then(|w| w.document())
        .is_some_and(|d| d.visibility_state() == VisibilityState::Hidden);
    if hidden {
        AppState::Background
    } else {
        AppState::Foreground
    }
}
