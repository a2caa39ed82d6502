#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ship;
const _: () = {
    #[allow(non_camel_case_types, dead_code)]
    enum Price {}
    #[allow(dead_code)]
    fn check() {
        ::workflow_core::__private::kept_across::<Order, Price>();
    }
};
const _: () = {
    #[allow(non_camel_case_types, dead_code)]
    enum LoyaltyDiscount {}
    #[allow(dead_code)]
    fn check() {
        ::workflow_core::__private::kept_across::<Order, LoyaltyDiscount>();
    }
};
const _: () = {
    #[allow(non_camel_case_types, dead_code)]
    enum LoyaltyDiscount {}
    #[allow(dead_code)]
    fn check() {
        ::workflow_core::__private::kept_across::<
            <price as ::workflow_core::Activity>::Output,
            LoyaltyDiscount,
        >();
    }
};
const _: () = {
    #[allow(non_camel_case_types, dead_code)]
    enum Sleep {}
    #[allow(dead_code)]
    fn check() {
        ::workflow_core::__private::kept_across::<Order, Sleep>();
    }
};
const _: () = {
    #[allow(non_camel_case_types, dead_code)]
    enum Sleep {}
    #[allow(dead_code)]
    fn check() {
        ::workflow_core::__private::kept_across::<
            <price as ::workflow_core::Activity>::Output,
            Sleep,
        >();
    }
};
const _: () = {
    #[allow(non_camel_case_types, dead_code)]
    enum Sleep {}
    #[allow(dead_code)]
    fn check() {
        ::workflow_core::__private::kept_across::<u64, Sleep>();
    }
};
const _: () = {
    #[allow(non_camel_case_types, dead_code)]
    enum BookExpress {}
    #[allow(dead_code)]
    fn check() {
        ::workflow_core::__private::kept_across::<
            <price as ::workflow_core::Activity>::Output,
            BookExpress,
        >();
    }
};
const _: () = {
    #[allow(non_camel_case_types, dead_code)]
    enum BookExpress {}
    #[allow(dead_code)]
    fn check() {
        ::workflow_core::__private::kept_across::<u64, BookExpress>();
    }
};
const _: () = {
    #[allow(non_camel_case_types, dead_code)]
    enum BookStandard {}
    #[allow(dead_code)]
    fn check() {
        ::workflow_core::__private::kept_across::<
            <price as ::workflow_core::Activity>::Output,
            BookStandard,
        >();
    }
};
const _: () = {
    #[allow(non_camel_case_types, dead_code)]
    enum BookStandard {}
    #[allow(dead_code)]
    fn check() {
        ::workflow_core::__private::kept_across::<u64, BookStandard>();
    }
};
/// The state machine compiled from workflow `ship`: one variant per suspension point.
#[derive(
    ::workflow_core::__private::serde::Serialize,
    ::workflow_core::__private::serde::Deserialize
)]
#[serde(crate = "::workflow_core::__private::serde")]
#[allow(clippy::large_enum_variant)]
pub enum ShipState {
    /// Before the first step; holds the input.
    Start {
        /// The workflow's input.
        order: Order,
    },
    /// Suspended at the activity `price`.
    Price {
        /// The operation awaited here.
        op_id: ::workflow_core::__private::OpId,
        /// `order`, still needed after this await.
        order: Order,
    },
    /// Suspended at the activity `loyalty_discount`.
    LoyaltyDiscount {
        /// The operation awaited here.
        op_id: ::workflow_core::__private::OpId,
        /// `order`, still needed after this await.
        order: Order,
        /// `quote`, still needed after this await.
        quote: <price as ::workflow_core::Activity>::Output,
    },
    /// Suspended at the timer.
    Sleep {
        /// The operation awaited here.
        op_id: ::workflow_core::__private::OpId,
        /// `order`, still needed after this await.
        order: Order,
        /// `quote`, still needed after this await.
        quote: <price as ::workflow_core::Activity>::Output,
        /// `discount`, still needed after this await.
        discount: u64,
    },
    /// Suspended at the activity `book_express`.
    BookExpress {
        /// The operation awaited here.
        op_id: ::workflow_core::__private::OpId,
        /// `quote`, still needed after this await.
        quote: <price as ::workflow_core::Activity>::Output,
        /// `discount`, still needed after this await.
        discount: u64,
    },
    /// Suspended at the activity `book_standard`.
    BookStandard {
        /// The operation awaited here.
        op_id: ::workflow_core::__private::OpId,
        /// `quote`, still needed after this await.
        quote: <price as ::workflow_core::Activity>::Output,
        /// `discount`, still needed after this await.
        discount: u64,
    },
    /// Finished: the code returned.
    Finished,
}
impl ShipState {
    #[allow(
        unreachable_code,
        unused_variables,
        unused_mut,
        unused_assignments,
        unused_braces,
        unused_labels,
        clippy::all
    )]
    fn __wf_drive(
        __wf_state: &mut Self,
        __wf_cx: &::workflow_core::__private::StepContext,
        __wf_scope: ::workflow_core::__private::ScopeId,
    ) -> ::core::result::Result<
        ::workflow_core::__private::Flow<Shipment>,
        WorkflowError,
    > {
        let ctx = ::workflow_core::__private::attach(__wf_cx, __wf_scope);
        '__wf_tramp: loop {
            match ::core::mem::replace(__wf_state, Self::Finished) {
                Self::Start { order: __wf_l_order } => {
                    let order: Order = __wf_l_order;
                    return ::workflow_core::__private::finish({
                        let __wf_aw0 = {
                            let __wf_op = ::workflow_core::__private::start(
                                ctx.activity(price, order.clone()),
                            );
                            *__wf_state = Self::Price {
                                op_id: __wf_op,
                                order: order,
                            };
                            continue '__wf_tramp;
                        };
                    });
                }
                Self::Price { op_id: __wf_op, order: __wf_l_order } => {
                    let __wf_value: ::core::result::Result<
                        <price as ::workflow_core::Activity>::Output,
                        ::workflow_core::WorkflowError,
                    > = match ::workflow_core::__private::poll::<
                        ::core::result::Result<
                            <price as ::workflow_core::Activity>::Output,
                            ::workflow_core::WorkflowError,
                        >,
                    >(__wf_cx, __wf_op) {
                        ::core::option::Option::Some(__wf_value) => __wf_value,
                        ::core::option::Option::None => {
                            *__wf_state = Self::Price {
                                op_id: __wf_op,
                                order: __wf_l_order,
                            };
                            return ::core::result::Result::Ok(
                                ::workflow_core::__private::Flow::Pending,
                            );
                        }
                    };
                    return ::workflow_core::__private::finish({
                        let order = __wf_l_order;
                        let __wf_aw0 = __wf_value;
                        let quote = __wf_aw0?;
                        let discount: u64 = if quote.total > 100 {
                            let __wf_aw1 = {
                                let __wf_op = ::workflow_core::__private::start(
                                    ctx.activity(loyalty_discount, order.customer_id),
                                );
                                *__wf_state = Self::LoyaltyDiscount {
                                    op_id: __wf_op,
                                    order: order,
                                    quote: quote,
                                };
                                continue '__wf_tramp;
                            };
                        } else {
                            if order.coupon.is_some() { 5 } else { 0 }
                        };
                        let label = match order.speed {
                            Speed::Express => {
                                let __wf_aw2 = {
                                    let __wf_op = ::workflow_core::__private::start(
                                        ctx.sleep(Duration::from_secs(60)),
                                    );
                                    *__wf_state = Self::Sleep {
                                        op_id: __wf_op,
                                        order: order,
                                        quote: quote,
                                        discount: discount,
                                    };
                                    continue '__wf_tramp;
                                };
                            }
                            Speed::Standard { days } => {
                                let __wf_aw4 = {
                                    let __wf_op = ::workflow_core::__private::start(
                                        ctx.activity(book_standard, days),
                                    );
                                    *__wf_state = Self::BookStandard {
                                        op_id: __wf_op,
                                        quote: quote,
                                        discount: discount,
                                    };
                                    continue '__wf_tramp;
                                };
                            }
                            Speed::Pickup => {
                                return ::workflow_core::__private::finish(
                                    Ok(Shipment::pickup(quote.total - discount)),
                                );
                            }
                        };
                    });
                }
                Self::LoyaltyDiscount {
                    op_id: __wf_op,
                    order: __wf_l_order,
                    quote: __wf_l_quote,
                } => {
                    let __wf_value: ::core::result::Result<
                        <loyalty_discount as ::workflow_core::Activity>::Output,
                        ::workflow_core::WorkflowError,
                    > = match ::workflow_core::__private::poll::<
                        ::core::result::Result<
                            <loyalty_discount as ::workflow_core::Activity>::Output,
                            ::workflow_core::WorkflowError,
                        >,
                    >(__wf_cx, __wf_op) {
                        ::core::option::Option::Some(__wf_value) => __wf_value,
                        ::core::option::Option::None => {
                            *__wf_state = Self::LoyaltyDiscount {
                                op_id: __wf_op,
                                order: __wf_l_order,
                                quote: __wf_l_quote,
                            };
                            return ::core::result::Result::Ok(
                                ::workflow_core::__private::Flow::Pending,
                            );
                        }
                    };
                    return ::workflow_core::__private::finish({
                        let order = __wf_l_order;
                        let quote = __wf_l_quote;
                        let discount: u64 = {
                            let __wf_aw1 = __wf_value;
                            __wf_aw1?
                        };
                        let label = match order.speed {
                            Speed::Express => {
                                let __wf_aw2 = {
                                    let __wf_op = ::workflow_core::__private::start(
                                        ctx.sleep(Duration::from_secs(60)),
                                    );
                                    *__wf_state = Self::Sleep {
                                        op_id: __wf_op,
                                        order: order,
                                        quote: quote,
                                        discount: discount,
                                    };
                                    continue '__wf_tramp;
                                };
                            }
                            Speed::Standard { days } => {
                                let __wf_aw4 = {
                                    let __wf_op = ::workflow_core::__private::start(
                                        ctx.activity(book_standard, days),
                                    );
                                    *__wf_state = Self::BookStandard {
                                        op_id: __wf_op,
                                        quote: quote,
                                        discount: discount,
                                    };
                                    continue '__wf_tramp;
                                };
                            }
                            Speed::Pickup => {
                                return ::workflow_core::__private::finish(
                                    Ok(Shipment::pickup(quote.total - discount)),
                                );
                            }
                        };
                    });
                }
                Self::Sleep {
                    op_id: __wf_op,
                    order: __wf_l_order,
                    quote: __wf_l_quote,
                    discount: __wf_l_discount,
                } => {
                    let __wf_value: ::core::result::Result<
                        (),
                        ::workflow_core::WorkflowError,
                    > = match ::workflow_core::__private::poll::<
                        ::core::result::Result<(), ::workflow_core::WorkflowError>,
                    >(__wf_cx, __wf_op) {
                        ::core::option::Option::Some(__wf_value) => __wf_value,
                        ::core::option::Option::None => {
                            *__wf_state = Self::Sleep {
                                op_id: __wf_op,
                                order: __wf_l_order,
                                quote: __wf_l_quote,
                                discount: __wf_l_discount,
                            };
                            return ::core::result::Result::Ok(
                                ::workflow_core::__private::Flow::Pending,
                            );
                        }
                    };
                    return ::workflow_core::__private::finish({
                        let order = __wf_l_order;
                        let quote = __wf_l_quote;
                        let discount = __wf_l_discount;
                        let label = {
                            let __wf_aw2 = __wf_value;
                            __wf_aw2?;
                            let __wf_aw3 = {
                                let __wf_op = ::workflow_core::__private::start(
                                    ctx.activity(book_express, order.id),
                                );
                                *__wf_state = Self::BookExpress {
                                    op_id: __wf_op,
                                    quote: quote,
                                    discount: discount,
                                };
                                continue '__wf_tramp;
                            };
                        };
                    });
                }
                Self::BookExpress {
                    op_id: __wf_op,
                    quote: __wf_l_quote,
                    discount: __wf_l_discount,
                } => {
                    let __wf_value: ::core::result::Result<
                        <book_express as ::workflow_core::Activity>::Output,
                        ::workflow_core::WorkflowError,
                    > = match ::workflow_core::__private::poll::<
                        ::core::result::Result<
                            <book_express as ::workflow_core::Activity>::Output,
                            ::workflow_core::WorkflowError,
                        >,
                    >(__wf_cx, __wf_op) {
                        ::core::option::Option::Some(__wf_value) => __wf_value,
                        ::core::option::Option::None => {
                            *__wf_state = Self::BookExpress {
                                op_id: __wf_op,
                                quote: __wf_l_quote,
                                discount: __wf_l_discount,
                            };
                            return ::core::result::Result::Ok(
                                ::workflow_core::__private::Flow::Pending,
                            );
                        }
                    };
                    return ::workflow_core::__private::finish({
                        let quote = __wf_l_quote;
                        let discount = __wf_l_discount;
                        let label = {
                            let __wf_aw3 = __wf_value;
                            __wf_aw3?
                        };
                        Ok(Shipment {
                            label,
                            charged: quote.total - discount,
                        })
                    });
                }
                Self::BookStandard {
                    op_id: __wf_op,
                    quote: __wf_l_quote,
                    discount: __wf_l_discount,
                } => {
                    let __wf_value: ::core::result::Result<
                        <book_standard as ::workflow_core::Activity>::Output,
                        ::workflow_core::WorkflowError,
                    > = match ::workflow_core::__private::poll::<
                        ::core::result::Result<
                            <book_standard as ::workflow_core::Activity>::Output,
                            ::workflow_core::WorkflowError,
                        >,
                    >(__wf_cx, __wf_op) {
                        ::core::option::Option::Some(__wf_value) => __wf_value,
                        ::core::option::Option::None => {
                            *__wf_state = Self::BookStandard {
                                op_id: __wf_op,
                                quote: __wf_l_quote,
                                discount: __wf_l_discount,
                            };
                            return ::core::result::Result::Ok(
                                ::workflow_core::__private::Flow::Pending,
                            );
                        }
                    };
                    return ::workflow_core::__private::finish({
                        let quote = __wf_l_quote;
                        let discount = __wf_l_discount;
                        let label = {
                            let __wf_aw4 = __wf_value;
                            __wf_aw4?
                        };
                        Ok(Shipment {
                            label,
                            charged: quote.total - discount,
                        })
                    });
                }
                Self::Finished => {
                    return ::core::result::Result::Err(
                        ::core::convert::From::from(
                            ::workflow_core::__private::resumed_after_finish("ship"),
                        ),
                    );
                }
            }
        }
    }
}
impl ::workflow_core::WorkflowMachine for ShipState {
    type Output = ::core::result::Result<Shipment, WorkflowError>;
    fn resume(
        &mut self,
        __wf_cx: &::workflow_core::__private::StepContext,
    ) -> ::workflow_core::Step<Self::Output> {
        ::workflow_core::__private::into_step(
            Self::__wf_drive(self, __wf_cx, ::workflow_core::__private::ScopeId::ROOT),
        )
    }
    fn state_name(&self) -> &'static str {
        match self {
            Self::Start { .. } => "Start",
            Self::Price { .. } => "Price",
            Self::LoyaltyDiscount { .. } => "LoyaltyDiscount",
            Self::Sleep { .. } => "Sleep",
            Self::BookExpress { .. } => "BookExpress",
            Self::BookStandard { .. } => "BookStandard",
            Self::Finished => "Finished",
        }
    }
}
impl ::workflow_core::Workflow for ship {
    const NAME: &'static str = "ship";
    const SCHEMA: u64 = ::workflow_core::__private::fingerprint(
        "ship|Shipment|WorkflowError|Start{order:Order}|Price{#[doc=\"Theoperationawaitedhere.\"]op_id:::workflow_core::__private::OpId,order:Order}|LoyaltyDiscount{#[doc=\"Theoperationawaitedhere.\"]op_id:::workflow_core::__private::OpId,order:Order,quote:<priceas::workflow_core::Activity>::Output}|Sleep{#[doc=\"Theoperationawaitedhere.\"]op_id:::workflow_core::__private::OpId,order:Order,quote:<priceas::workflow_core::Activity>::Output,discount:u64}|BookExpress{#[doc=\"Theoperationawaitedhere.\"]op_id:::workflow_core::__private::OpId,quote:<priceas::workflow_core::Activity>::Output,discount:u64}|BookStandard{#[doc=\"Theoperationawaitedhere.\"]op_id:::workflow_core::__private::OpId,quote:<priceas::workflow_core::Activity>::Output,discount:u64}",
    );
    type Input = Order;
    type Output = Shipment;
    type Error = WorkflowError;
    type State = ShipState;
    fn start(__wf_input: Self::Input) -> Self::State {
        ShipState::Start {
            order: __wf_input,
        }
    }
    fn graph() -> ::workflow_core::StateGraph {
        ::workflow_core::StateGraph {
            workflow: ::std::string::String::from("ship"),
            states: ::std::vec![
                ::workflow_core::StateNode { name : ::std::string::String::from("Start"),
                kind : ::workflow_core::StateKind::Start, awaits :
                ::std::string::String::new(), fields :
                ::std::vec![::std::string::String::from("order")], },
                ::workflow_core::StateNode { name : ::std::string::String::from("Price"),
                kind : ::workflow_core::StateKind::Await, awaits :
                ::std::string::String::from("activity `price`"), fields :
                ::std::vec![::std::string::String::from("order")], },
                ::workflow_core::StateNode { name :
                ::std::string::String::from("LoyaltyDiscount"), kind :
                ::workflow_core::StateKind::Await, awaits :
                ::std::string::String::from("activity `loyalty_discount`"), fields :
                ::std::vec![::std::string::String::from("order"),
                ::std::string::String::from("quote")], }, ::workflow_core::StateNode {
                name : ::std::string::String::from("Sleep"), kind :
                ::workflow_core::StateKind::Await, awaits :
                ::std::string::String::from("timer"), fields :
                ::std::vec![::std::string::String::from("order"),
                ::std::string::String::from("quote"),
                ::std::string::String::from("discount")], }, ::workflow_core::StateNode {
                name : ::std::string::String::from("BookExpress"), kind :
                ::workflow_core::StateKind::Await, awaits :
                ::std::string::String::from("activity `book_express`"), fields :
                ::std::vec![::std::string::String::from("quote"),
                ::std::string::String::from("discount")], }, ::workflow_core::StateNode {
                name : ::std::string::String::from("BookStandard"), kind :
                ::workflow_core::StateKind::Await, awaits :
                ::std::string::String::from("activity `book_standard`"), fields :
                ::std::vec![::std::string::String::from("quote"),
                ::std::string::String::from("discount")], }, ::workflow_core::StateNode {
                name : ::std::string::String::from("Finished"), kind :
                ::workflow_core::StateKind::Finished, awaits :
                ::std::string::String::new(), fields : ::std::vec::Vec::new(), }
            ],
            transitions: ::std::vec![
                ::workflow_core::Transition { from :
                ::std::string::String::from("Start"), to :
                ::std::string::String::from("Price"), on_cancel : false, },
                ::workflow_core::Transition { from :
                ::std::string::String::from("Price"), to :
                ::std::string::String::from("Finished"), on_cancel : false, },
                ::workflow_core::Transition { from :
                ::std::string::String::from("Price"), to :
                ::std::string::String::from("LoyaltyDiscount"), on_cancel : false, },
                ::workflow_core::Transition { from :
                ::std::string::String::from("Price"), to :
                ::std::string::String::from("Sleep"), on_cancel : false, },
                ::workflow_core::Transition { from :
                ::std::string::String::from("Price"), to :
                ::std::string::String::from("BookStandard"), on_cancel : false, },
                ::workflow_core::Transition { from :
                ::std::string::String::from("LoyaltyDiscount"), to :
                ::std::string::String::from("Finished"), on_cancel : false, },
                ::workflow_core::Transition { from :
                ::std::string::String::from("LoyaltyDiscount"), to :
                ::std::string::String::from("Sleep"), on_cancel : false, },
                ::workflow_core::Transition { from :
                ::std::string::String::from("LoyaltyDiscount"), to :
                ::std::string::String::from("BookStandard"), on_cancel : false, },
                ::workflow_core::Transition { from :
                ::std::string::String::from("Sleep"), to :
                ::std::string::String::from("Finished"), on_cancel : false, },
                ::workflow_core::Transition { from :
                ::std::string::String::from("Sleep"), to :
                ::std::string::String::from("BookExpress"), on_cancel : false, },
                ::workflow_core::Transition { from :
                ::std::string::String::from("BookExpress"), to :
                ::std::string::String::from("Finished"), on_cancel : false, },
                ::workflow_core::Transition { from :
                ::std::string::String::from("BookStandard"), to :
                ::std::string::String::from("Finished"), on_cancel : false, }
            ],
        }
    }
}
