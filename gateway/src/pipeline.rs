//! Per request: route -> session -> entity slice -> decision -> forward or refuse.

use std::sync::Arc;

use http::Request;
use hyper::body::Incoming;

use crate::body::boxed;
use crate::config::Config;
use crate::error::{ApiError, Code};
use crate::proxy::{ConnInfo, Forward, Pipeline, Step, headers};
use crate::routes::RouteTable;

pub struct Gateway {
    routes: RouteTable,
    cookie_name: String,
    allow_all: bool,
}

impl Gateway {
    pub fn new(config: &Config, routes: RouteTable) -> Self {
        Gateway {
            routes,
            cookie_name: config.session.cookie_name.clone(),
            allow_all: config.dev.allow_all,
        }
    }
}

impl Pipeline for Gateway {
    async fn request(&self, req: Request<Incoming>, _conn: ConnInfo) -> Step {
        let Some(route) = self.routes.lookup(req.uri().path(), req.method()) else {
            return Step::Respond {
                response: ApiError::from(Code::RouteNotFound).into_response(),
                route: None,
            };
        };
        if !self.allow_all {
            // Fail closed: nothing is forwarded without a decision.
            return Step::Respond {
                response: ApiError::from(Code::NotPermitted).into_response(),
                route: Some(route.index),
            };
        }
        let mut request = req.map(boxed);
        headers::strip_cookie(request.headers_mut(), &self.cookie_name);
        if headers::bearer(request.headers()).is_some() {
            request.headers_mut().remove(http::header::AUTHORIZATION);
        }
        Step::Forward(Forward {
            request,
            upstream: Arc::clone(&route.upstream),
            identity: Vec::new(),
            route: route.index,
        })
    }
}
