//! `service install|uninstall|status`: the engine's `service` functions with the real
//! `systemctl`/`launchctl`.

use broker::api::service::{self, System};
use broker::api::{Failure, Request};
use broker::control;

use super::Ctx;
use crate::args::ServiceCommand;
use crate::output::{self, Fail, say};

pub async fn run(ctx: &Ctx, command: ServiceCommand) -> Result<(), Fail> {
    let path = service::default_path().map_err(Failure::from)?;
    match command {
        ServiceCommand::Install => {
            let spec = service::Spec::current(&ctx.config.paths.log_dir).map_err(Failure::from)?;
            let done = service::install(&spec, &path, &System).map_err(Failure::from)?;
            output::show(ctx.json, &done, |d| say!("{}", d.message))
        }
        ServiceCommand::Uninstall => {
            let done = service::uninstall(&path, &System).map_err(Failure::from)?;
            output::show(ctx.json, &done, |d| say!("{}", d.message))
        }
        ServiceCommand::Status => {
            let socket = control::socket_path(&ctx.config.paths.data_dir);
            let answers = matches!(
                control::call(&socket, &Request::Status, |_| {}).await,
                Some(Ok(_))
            );
            let status = service::status(&path, answers, &System).map_err(Failure::from)?;
            output::show(ctx.json, &status, |s| {
                say!("{}", s.message);
                say!(
                    "{}",
                    if s.broker_answers {
                        "A Keycard Broker answers on this home's control socket."
                    } else {
                        "No Keycard Broker answers on this home's control socket."
                    }
                );
            })
        }
    }
}
