/// Charges the order's card.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, Default)]
pub struct charge;
impl ::workflow_core::Activity for charge {
    const NAME: &'static str = "charge";
    type Input = Order;
    type Output = Receipt;
    fn run(
        self,
        __ctx: ::workflow_core::ActivityContext,
        __input: Self::Input,
    ) -> ::workflow_core::BoxFuture<
        ::core::result::Result<Receipt, ::workflow_core::ActivityError>,
    > {
        async fn __activity_body(
            ctx: ActivityContext,
            order: Order,
        ) -> Result<Receipt, ActivityError> {
            ctx.heartbeat(0)?;
            Ok(Receipt::new(order.id))
        }
        ::workflow_core::__private::box_activity(__activity_body(__ctx, __input))
    }
}
