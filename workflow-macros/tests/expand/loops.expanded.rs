#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, Default)]
struct settle;
const _: () = {
    #[allow(non_camel_case_types, dead_code)]
    enum Charge {}
    #[allow(dead_code)]
    fn check() {
        ::workflow_core::__private::kept_across::<BatchId, Charge>();
    }
};
const _: () = {
    #[allow(non_camel_case_types, dead_code)]
    enum Charge {}
    #[allow(dead_code)]
    fn check() {
        ::workflow_core::__private::kept_across::<u64, Charge>();
    }
};
const _: () = {
    #[allow(non_camel_case_types, dead_code)]
    enum Confirm {}
    #[allow(dead_code)]
    fn check() {
        ::workflow_core::__private::kept_across::<BatchId, Confirm>();
    }
};
const _: () = {
    #[allow(non_camel_case_types, dead_code)]
    enum Confirm {}
    #[allow(dead_code)]
    fn check() {
        ::workflow_core::__private::kept_across::<u64, Confirm>();
    }
};
const _: () = {
    #[allow(non_camel_case_types, dead_code)]
    enum Confirm {}
    #[allow(dead_code)]
    fn check() {
        ::workflow_core::__private::kept_across::<u32, Confirm>();
    }
};
const _: () = {
    #[allow(non_camel_case_types, dead_code)]
    enum Sleep {}
    #[allow(dead_code)]
    fn check() {
        ::workflow_core::__private::kept_across::<BatchId, Sleep>();
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
    enum Sleep {}
    #[allow(dead_code)]
    fn check() {
        ::workflow_core::__private::kept_across::<u32, Sleep>();
    }
};
/// The state machine compiled from workflow `settle`: one variant per suspension point.
#[derive(
    ::workflow_core::__private::serde::Serialize,
    ::workflow_core::__private::serde::Deserialize
)]
#[serde(crate = "::workflow_core::__private::serde")]
#[allow(clippy::large_enum_variant)]
enum SettleState {
    /// Before the first step; holds the input.
    Start {
        /// The workflow's input.
        batch: Batch,
    },
    /// Suspended at the activity `charge`.
    Charge {
        /// The operation awaited here.
        op_id: ::workflow_core::__private::OpId,
        /// `id`, still needed after this await.
        id: BatchId,
        /// `paid`, still needed after this await.
        paid: u64,
        /// The items of the `for` loop still to run, last first.
        iter0: ::std::vec::Vec<<Vec<Invoice> as ::core::iter::IntoIterator>::Item>,
    },
    /// Suspended at the activity `confirm`.
    Confirm {
        /// The operation awaited here.
        op_id: ::workflow_core::__private::OpId,
        /// `id`, still needed after this await.
        id: BatchId,
        /// `paid`, still needed after this await.
        paid: u64,
        /// `attempts`, still needed after this await.
        attempts: u32,
    },
    /// Suspended at the timer.
    Sleep {
        /// The operation awaited here.
        op_id: ::workflow_core::__private::OpId,
        /// `id`, still needed after this await.
        id: BatchId,
        /// `paid`, still needed after this await.
        paid: u64,
        /// `attempts`, still needed after this await.
        attempts: u32,
    },
    /// Finished: the code returned.
    Finished,
}
impl SettleState {
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
    ) -> ::core::result::Result<::workflow_core::__private::Flow<u64>, WorkflowError> {
        let ctx = ::workflow_core::__private::attach(__wf_cx, __wf_scope);
        '__wf_tramp: loop {
            match ::core::mem::replace(__wf_state, Self::Finished) {
                Self::Start { batch: __wf_l_batch } => {
                    let batch: Batch = __wf_l_batch;
                    return ::workflow_core::__private::finish({
                        let id: BatchId = batch.id;
                        let invoices: Vec<Invoice> = batch.invoices;
                        let mut paid: u64 = 0;
                        let mut __wf_iter0: ::std::vec::Vec<
                            <Vec<Invoice> as ::core::iter::IntoIterator>::Item,
                        > = ::workflow_core::__private::collect_rev(invoices);
                        loop {
                            let ::core::option::Option::Some(__wf_item1) = __wf_iter0
                                .pop() else {
                                break;
                            };
                            let invoice: <Vec<
                                Invoice,
                            > as ::core::iter::IntoIterator>::Item = __wf_item1;
                            if invoice.amount == 0 {
                                continue;
                            }
                            let __wf_aw0 = {
                                let __wf_op = ::workflow_core::__private::start(
                                    ctx.activity(charge, invoice),
                                );
                                *__wf_state = Self::Charge {
                                    op_id: __wf_op,
                                    id: id,
                                    paid: paid,
                                    iter0: __wf_iter0,
                                };
                                continue '__wf_tramp;
                            };
                        };
                        let mut attempts: u32 = 0;
                        loop {
                            let __wf_aw1 = {
                                let __wf_op = ::workflow_core::__private::start(
                                    ctx.activity(confirm, id),
                                );
                                *__wf_state = Self::Confirm {
                                    op_id: __wf_op,
                                    id: id,
                                    paid: paid,
                                    attempts: attempts,
                                };
                                continue '__wf_tramp;
                            };
                        };
                        Ok(paid)
                    });
                }
                Self::Charge {
                    op_id: __wf_op,
                    id: __wf_l_id,
                    paid: __wf_l_paid,
                    iter0: __wf_l_iter0,
                } => {
                    let __wf_value: ::core::result::Result<
                        <charge as ::workflow_core::Activity>::Output,
                        ::workflow_core::WorkflowError,
                    > = match ::workflow_core::__private::poll::<
                        ::core::result::Result<
                            <charge as ::workflow_core::Activity>::Output,
                            ::workflow_core::WorkflowError,
                        >,
                    >(__wf_cx, __wf_op) {
                        ::core::option::Option::Some(__wf_value) => __wf_value,
                        ::core::option::Option::None => {
                            *__wf_state = Self::Charge {
                                op_id: __wf_op,
                                id: __wf_l_id,
                                paid: __wf_l_paid,
                                iter0: __wf_l_iter0,
                            };
                            return ::core::result::Result::Ok(
                                ::workflow_core::__private::Flow::Pending,
                            );
                        }
                    };
                    return ::workflow_core::__private::finish({
                        let id = __wf_l_id;
                        let mut paid = __wf_l_paid;
                        let mut __wf_iter0 = __wf_l_iter0;
                        {
                            let __wf_ctl2: ::workflow_core::__private::LoopControl<()> = '__wf_first2: {
                                {
                                    let __wf_aw0 = __wf_value;
                                    paid += __wf_aw0?;
                                };
                                ::workflow_core::__private::LoopControl::Next
                            };
                            match __wf_ctl2 {
                                ::workflow_core::__private::LoopControl::Break(
                                    __wf_break,
                                ) => __wf_break,
                                ::workflow_core::__private::LoopControl::Next => {
                                    loop {
                                        let ::core::option::Option::Some(__wf_item1) = __wf_iter0
                                            .pop() else {
                                            break;
                                        };
                                        let invoice: <Vec<
                                            Invoice,
                                        > as ::core::iter::IntoIterator>::Item = __wf_item1;
                                        if invoice.amount == 0 {
                                            continue;
                                        }
                                        let __wf_aw0 = {
                                            let __wf_op = ::workflow_core::__private::start(
                                                ctx.activity(charge, invoice),
                                            );
                                            *__wf_state = Self::Charge {
                                                op_id: __wf_op,
                                                id: id,
                                                paid: paid,
                                                iter0: __wf_iter0,
                                            };
                                            continue '__wf_tramp;
                                        };
                                    }
                                }
                            }
                        };
                        let mut attempts: u32 = 0;
                        loop {
                            let __wf_aw1 = {
                                let __wf_op = ::workflow_core::__private::start(
                                    ctx.activity(confirm, id),
                                );
                                *__wf_state = Self::Confirm {
                                    op_id: __wf_op,
                                    id: id,
                                    paid: paid,
                                    attempts: attempts,
                                };
                                continue '__wf_tramp;
                            };
                        };
                        Ok(paid)
                    });
                }
                Self::Confirm {
                    op_id: __wf_op,
                    id: __wf_l_id,
                    paid: __wf_l_paid,
                    attempts: __wf_l_attempts,
                } => {
                    let __wf_value: ::core::result::Result<
                        <confirm as ::workflow_core::Activity>::Output,
                        ::workflow_core::WorkflowError,
                    > = match ::workflow_core::__private::poll::<
                        ::core::result::Result<
                            <confirm as ::workflow_core::Activity>::Output,
                            ::workflow_core::WorkflowError,
                        >,
                    >(__wf_cx, __wf_op) {
                        ::core::option::Option::Some(__wf_value) => __wf_value,
                        ::core::option::Option::None => {
                            *__wf_state = Self::Confirm {
                                op_id: __wf_op,
                                id: __wf_l_id,
                                paid: __wf_l_paid,
                                attempts: __wf_l_attempts,
                            };
                            return ::core::result::Result::Ok(
                                ::workflow_core::__private::Flow::Pending,
                            );
                        }
                    };
                    return ::workflow_core::__private::finish({
                        let id = __wf_l_id;
                        let mut paid = __wf_l_paid;
                        let mut attempts = __wf_l_attempts;
                        {
                            let __wf_ctl2: ::workflow_core::__private::LoopControl<()> = '__wf_first2: {
                                {
                                    let __wf_aw1 = __wf_value;
                                    if !(!__wf_aw1?) {
                                        break '__wf_first2 (::workflow_core::__private::LoopControl::Break(()));
                                    }
                                    attempts += 1;
                                    if attempts > 3 {
                                        return ::workflow_core::__private::finish(
                                            Err(WorkflowError::application("payment not confirmed")),
                                        );
                                    }
                                    let __wf_aw2 = {
                                        let __wf_op = ::workflow_core::__private::start(
                                            ctx.sleep(Duration::from_secs(10)),
                                        );
                                        *__wf_state = Self::Sleep {
                                            op_id: __wf_op,
                                            id: id,
                                            paid: paid,
                                            attempts: attempts,
                                        };
                                        continue '__wf_tramp;
                                    };
                                };
                                ::workflow_core::__private::LoopControl::Next
                            };
                            match __wf_ctl2 {
                                ::workflow_core::__private::LoopControl::Break(
                                    __wf_break,
                                ) => __wf_break,
                                ::workflow_core::__private::LoopControl::Next => {
                                    loop {
                                        let __wf_aw1 = {
                                            let __wf_op = ::workflow_core::__private::start(
                                                ctx.activity(confirm, id),
                                            );
                                            *__wf_state = Self::Confirm {
                                                op_id: __wf_op,
                                                id: id,
                                                paid: paid,
                                                attempts: attempts,
                                            };
                                            continue '__wf_tramp;
                                        };
                                    }
                                }
                            }
                        };
                        Ok(paid)
                    });
                }
                Self::Sleep {
                    op_id: __wf_op,
                    id: __wf_l_id,
                    paid: __wf_l_paid,
                    attempts: __wf_l_attempts,
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
                                id: __wf_l_id,
                                paid: __wf_l_paid,
                                attempts: __wf_l_attempts,
                            };
                            return ::core::result::Result::Ok(
                                ::workflow_core::__private::Flow::Pending,
                            );
                        }
                    };
                    return ::workflow_core::__private::finish({
                        let id = __wf_l_id;
                        let mut paid = __wf_l_paid;
                        let mut attempts = __wf_l_attempts;
                        {
                            let __wf_ctl2: ::workflow_core::__private::LoopControl<()> = '__wf_first2: {
                                {
                                    let __wf_aw2 = __wf_value;
                                    __wf_aw2?;
                                };
                                ::workflow_core::__private::LoopControl::Next
                            };
                            match __wf_ctl2 {
                                ::workflow_core::__private::LoopControl::Break(
                                    __wf_break,
                                ) => __wf_break,
                                ::workflow_core::__private::LoopControl::Next => {
                                    loop {
                                        let __wf_aw1 = {
                                            let __wf_op = ::workflow_core::__private::start(
                                                ctx.activity(confirm, id),
                                            );
                                            *__wf_state = Self::Confirm {
                                                op_id: __wf_op,
                                                id: id,
                                                paid: paid,
                                                attempts: attempts,
                                            };
                                            continue '__wf_tramp;
                                        };
                                    }
                                }
                            }
                        };
                        Ok(paid)
                    });
                }
                Self::Finished => {
                    return ::core::result::Result::Err(
                        ::core::convert::From::from(
                            ::workflow_core::__private::resumed_after_finish("settle"),
                        ),
                    );
                }
            }
        }
    }
}
impl ::workflow_core::WorkflowMachine for SettleState {
    type Output = ::core::result::Result<u64, WorkflowError>;
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
            Self::Charge { .. } => "Charge",
            Self::Confirm { .. } => "Confirm",
            Self::Sleep { .. } => "Sleep",
            Self::Finished => "Finished",
        }
    }
}
impl ::workflow_core::Workflow for settle {
    const NAME: &'static str = "settle";
    const SCHEMA: u64 = ::workflow_core::__private::fingerprint(
        "settle|u64|WorkflowError|Start{batch:Batch}|Charge{#[doc=\"Theoperationawaitedhere.\"]op_id:::workflow_core::__private::OpId,id:BatchId,paid:u64,iter0:::std::vec::Vec<<Vec<Invoice>as::core::iter::IntoIterator>::Item>}|Confirm{#[doc=\"Theoperationawaitedhere.\"]op_id:::workflow_core::__private::OpId,id:BatchId,paid:u64,attempts:u32}|Sleep{#[doc=\"Theoperationawaitedhere.\"]op_id:::workflow_core::__private::OpId,id:BatchId,paid:u64,attempts:u32}",
    );
    type Input = Batch;
    type Output = u64;
    type Error = WorkflowError;
    type State = SettleState;
    fn start(__wf_input: Self::Input) -> Self::State {
        SettleState::Start {
            batch: __wf_input,
        }
    }
    fn graph() -> ::workflow_core::StateGraph {
        ::workflow_core::StateGraph {
            workflow: ::std::string::String::from("settle"),
            states: ::std::vec![
                ::workflow_core::StateNode { name : ::std::string::String::from("Start"),
                kind : ::workflow_core::StateKind::Start, awaits :
                ::std::string::String::new(), fields :
                ::std::vec![::std::string::String::from("batch")], },
                ::workflow_core::StateNode { name :
                ::std::string::String::from("Charge"), kind :
                ::workflow_core::StateKind::Await, awaits :
                ::std::string::String::from("activity `charge`"), fields :
                ::std::vec![::std::string::String::from("id"),
                ::std::string::String::from("paid"),
                ::std::string::String::from("iter0")], }, ::workflow_core::StateNode {
                name : ::std::string::String::from("Confirm"), kind :
                ::workflow_core::StateKind::Await, awaits :
                ::std::string::String::from("activity `confirm`"), fields :
                ::std::vec![::std::string::String::from("id"),
                ::std::string::String::from("paid"),
                ::std::string::String::from("attempts")], }, ::workflow_core::StateNode {
                name : ::std::string::String::from("Sleep"), kind :
                ::workflow_core::StateKind::Await, awaits :
                ::std::string::String::from("timer"), fields :
                ::std::vec![::std::string::String::from("id"),
                ::std::string::String::from("paid"),
                ::std::string::String::from("attempts")], }, ::workflow_core::StateNode {
                name : ::std::string::String::from("Finished"), kind :
                ::workflow_core::StateKind::Finished, awaits :
                ::std::string::String::new(), fields : ::std::vec::Vec::new(), }
            ],
            transitions: ::std::vec![
                ::workflow_core::Transition { from :
                ::std::string::String::from("Start"), to :
                ::std::string::String::from("Finished"), on_cancel : false, },
                ::workflow_core::Transition { from :
                ::std::string::String::from("Start"), to :
                ::std::string::String::from("Charge"), on_cancel : false, },
                ::workflow_core::Transition { from :
                ::std::string::String::from("Start"), to :
                ::std::string::String::from("Confirm"), on_cancel : false, },
                ::workflow_core::Transition { from :
                ::std::string::String::from("Charge"), to :
                ::std::string::String::from("Finished"), on_cancel : false, },
                ::workflow_core::Transition { from :
                ::std::string::String::from("Charge"), to :
                ::std::string::String::from("Charge"), on_cancel : false, },
                ::workflow_core::Transition { from :
                ::std::string::String::from("Charge"), to :
                ::std::string::String::from("Confirm"), on_cancel : false, },
                ::workflow_core::Transition { from :
                ::std::string::String::from("Confirm"), to :
                ::std::string::String::from("Finished"), on_cancel : false, },
                ::workflow_core::Transition { from :
                ::std::string::String::from("Confirm"), to :
                ::std::string::String::from("Confirm"), on_cancel : false, },
                ::workflow_core::Transition { from :
                ::std::string::String::from("Confirm"), to :
                ::std::string::String::from("Sleep"), on_cancel : false, },
                ::workflow_core::Transition { from :
                ::std::string::String::from("Sleep"), to :
                ::std::string::String::from("Finished"), on_cancel : false, },
                ::workflow_core::Transition { from :
                ::std::string::String::from("Sleep"), to :
                ::std::string::String::from("Confirm"), on_cancel : false, }
            ],
        }
    }
}
