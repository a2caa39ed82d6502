/// The cleanup the cancellation handler runs.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, Default)]
pub struct cleanup_activity;
impl ::workflow_core::Activity for cleanup_activity {
    const NAME: &'static str = "CleanupActivity";
    type Input = ();
    type Output = ();
    fn run(
        self,
        __ctx: ::workflow_core::ActivityContext,
        __input: Self::Input,
    ) -> ::workflow_core::BoxFuture<
        ::core::result::Result<(), ::workflow_core::ActivityError>,
    > {
        async fn __activity_body(ctx: ActivityContext) -> Result<(), ActivityError> {
            journal::write(&ctx.info().workflow_id, "CleanupActivity ran");
            Ok(())
        }
        ::workflow_core::__private::box_activity({
            let () = __input;
            __activity_body(__ctx)
        })
    }
}
