//! `h.users()`: a listing a script walks with `for`, read a few pages ahead in the background, so a million
//! users cost no more memory than a few pages of them.

use super::types::{action_error, RecordPacker, ScriptResult};
use crate::backends::model::User;
use crate::dispatch::listing::UserPage;
use parking_lot::Mutex;
use rhai::Dynamic;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The value `h.users()` returns. Read once: a second `for` over it goes on where the first stopped.
#[derive(Clone)]
pub struct Users(Arc<Mutex<Walk>>);

struct Walk {
    runtime: tokio::runtime::Handle,
    profile: String,
    /// `None` once the listing has ended or failed.
    pages: Option<mpsc::Receiver<UserPage>>,
    page: std::vec::IntoIter<User>,
}

impl Users {
    pub fn new(runtime: tokio::runtime::Handle, profile: &str, pages: mpsc::Receiver<UserPage>) -> Self {
        Users(Arc::new(Mutex::new(Walk {
            runtime,
            profile: profile.to_string(),
            pages: Some(pages),
            page: Vec::new().into_iter(),
        })))
    }

    pub fn describe(&self) -> String {
        format!("Users({}: read as a for loop walks them)", self.0.lock().profile)
    }
}

impl Users {
    /// The users not yet walked of the current page, or the next page; `None` at the end.
    pub fn next_page(&self) -> Option<ScriptResult<Vec<User>>> {
        let mut walk = self.0.lock();
        let rest: Vec<User> = walk.page.by_ref().collect();
        if !rest.is_empty() {
            return Some(Ok(rest));
        }
        walk.next_page()
    }
}

impl Walk {
    fn next_page(&mut self) -> Option<ScriptResult<Vec<User>>> {
        let next = self.runtime.block_on(self.pages.as_mut()?.recv());
        match next {
            Some(Ok(users)) => Some(Ok(users)),
            Some(Err(e)) => {
                self.pages = None;
                Some(Err(action_error(e)))
            }
            None => {
                self.pages = None;
                None
            }
        }
    }
}

impl IntoIterator for Users {
    type Item = ScriptResult<Dynamic>;
    type IntoIter = UsersIter;

    fn into_iter(self) -> UsersIter {
        UsersIter(self.0, RecordPacker::walking())
    }
}

/// The walk, and what its records share (their kind and profile texts).
pub struct UsersIter(Arc<Mutex<Walk>>, RecordPacker);

impl Iterator for UsersIter {
    type Item = ScriptResult<Dynamic>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut walk = self.0.lock();
        loop {
            if let Some(user) = walk.page.next() {
                return Some(Ok(self.1.user(user)));
            }
            match walk.next_page()? {
                Ok(users) => walk.page = users.into_iter(),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
