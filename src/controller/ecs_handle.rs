//! The ECS calls a reconcile makes, behind a small trait so that the reconcile can run against a
//! fake in tests: describe one instance (observe), start and stop it (act). [`EcsClient`] is the
//! production implementation; the signatures are its own.

use futures::future::BoxFuture;

use crate::ecs::{
    CallOptions, Credentials, EcsClient, EcsError, InstanceObservation, StartInstance,
    StopInstance, WriteOutcome,
};

/// The ECS calls of one reconcile.
pub trait EcsHandle: Send + Sync {
    /// `DescribeInstances` for one instance: `Ok(None)` when ECS does not return it.
    fn describe_instance<'a>(
        &'a self,
        creds: &'a Credentials,
        region_id: &'a str,
        instance_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<InstanceObservation>, EcsError>>;

    /// `StartInstance`; no part of it runs past `options.deadline`.
    fn start_instance<'a>(
        &'a self,
        creds: &'a Credentials,
        region_id: &'a str,
        request: &'a StartInstance,
        options: CallOptions,
    ) -> BoxFuture<'a, Result<WriteOutcome, EcsError>>;

    /// `StopInstance`; no part of it runs past `options.deadline`.
    fn stop_instance<'a>(
        &'a self,
        creds: &'a Credentials,
        region_id: &'a str,
        request: &'a StopInstance,
        options: CallOptions,
    ) -> BoxFuture<'a, Result<WriteOutcome, EcsError>>;
}

impl EcsHandle for EcsClient {
    fn describe_instance<'a>(
        &'a self,
        creds: &'a Credentials,
        region_id: &'a str,
        instance_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<InstanceObservation>, EcsError>> {
        Box::pin(EcsClient::describe_instance(
            self,
            creds,
            region_id,
            instance_id,
        ))
    }

    fn start_instance<'a>(
        &'a self,
        creds: &'a Credentials,
        region_id: &'a str,
        request: &'a StartInstance,
        options: CallOptions,
    ) -> BoxFuture<'a, Result<WriteOutcome, EcsError>> {
        Box::pin(async move {
            EcsClient::start_instance_with(self, creds, region_id, request, &options).await
        })
    }

    fn stop_instance<'a>(
        &'a self,
        creds: &'a Credentials,
        region_id: &'a str,
        request: &'a StopInstance,
        options: CallOptions,
    ) -> BoxFuture<'a, Result<WriteOutcome, EcsError>> {
        Box::pin(async move {
            EcsClient::stop_instance_with(self, creds, region_id, request, &options).await
        })
    }
}
