/// `YourWorkflow` from the Go sample.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, Default)]
pub struct your_workflow;
/// The state machine compiled from workflow `your_workflow`: one variant per suspension point.
#[derive(
    ::workflow_core::__private::serde::Serialize,
    ::workflow_core::__private::serde::Deserialize
)]
#[serde(crate = "::workflow_core::__private::serde")]
#[allow(clippy::large_enum_variant)]
pub enum YourWorkflowState {
    /// Before the first step.
    Start {},
    /// Suspended at the activity `activity_to_be_canceled`.
    ActivityToBeCanceled {
        /// The operation awaited here.
        op_id: ::workflow_core::__private::OpId,
    },
    /// Suspended at the activity `activity_to_be_skipped`.
    ActivityToBeSkipped {
        /// The operation awaited here.
        op_id: ::workflow_core::__private::OpId,
    },
    /// Suspended at the activity `cleanup_activity` inside a cancellation handler.
    OnCancelCleanupActivity {
        /// The operation awaited here.
        op_id: ::workflow_core::__private::OpId,
        /// How the guarded code was being left, to finish leaving after the handler.
        pending_exit: ::workflow_core::__private::Exit<
            ::core::result::Result<(), WorkflowError>,
        >,
        /// `cleanup`, still needed after this await.
        cleanup: ::workflow_core::__private::ScopeId,
    },
    /// Finished: the code returned.
    Finished,
}
impl YourWorkflowState {
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
    ) -> ::core::result::Result<::workflow_core::__private::Flow<()>, WorkflowError> {
        let ctx = ::workflow_core::__private::attach(__wf_cx, __wf_scope);
        '__wf_tramp: loop {
            match ::core::mem::replace(__wf_state, Self::Finished) {
                Self::Start {} => {
                    return ::workflow_core::__private::finish({
                        ctx.log("cancel workflow started");
                        {
                            let __wf_aw0 = {
                                let __wf_op = ::workflow_core::__private::start(
                                    ctx
                                        .activity(activity_to_be_canceled, ())
                                        .start_to_close_timeout(Duration::from_secs(30 * 60))
                                        .heartbeat_timeout(Duration::from_secs(5))
                                        .cancellation(
                                            ActivityCancellationType::WaitCancellationCompleted,
                                        ),
                                );
                                *__wf_state = Self::ActivityToBeCanceled {
                                    op_id: __wf_op,
                                };
                                continue '__wf_tramp;
                            };
                        }
                    });
                }
                Self::ActivityToBeCanceled { op_id: __wf_op } => {
                    let __wf_value: ::core::result::Result<
                        <activity_to_be_canceled as ::workflow_core::Activity>::Output,
                        ::workflow_core::WorkflowError,
                    > = match ::workflow_core::__private::poll::<
                        ::core::result::Result<
                            <activity_to_be_canceled as ::workflow_core::Activity>::Output,
                            ::workflow_core::WorkflowError,
                        >,
                    >(__wf_cx, __wf_op) {
                        ::core::option::Option::Some(__wf_value) => __wf_value,
                        ::core::option::Option::None => {
                            *__wf_state = Self::ActivityToBeCanceled {
                                op_id: __wf_op,
                            };
                            return ::core::result::Result::Ok(
                                ::workflow_core::__private::Flow::Pending,
                            );
                        }
                    };
                    return ::workflow_core::__private::finish({
                        {
                            let __wf_aw0 = __wf_value;
                            let result = __wf_aw0;
                            ctx.log(format!("ActivityToBeCanceled returns {result:?}"));
                            let __wf_aw1 = {
                                let __wf_op = ::workflow_core::__private::start(
                                    ctx.activity(activity_to_be_skipped, ()),
                                );
                                *__wf_state = Self::ActivityToBeSkipped {
                                    op_id: __wf_op,
                                };
                                continue '__wf_tramp;
                            };
                        }
                    });
                }
                Self::ActivityToBeSkipped { op_id: __wf_op } => {
                    let __wf_value: ::core::result::Result<
                        <activity_to_be_skipped as ::workflow_core::Activity>::Output,
                        ::workflow_core::WorkflowError,
                    > = match ::workflow_core::__private::poll::<
                        ::core::result::Result<
                            <activity_to_be_skipped as ::workflow_core::Activity>::Output,
                            ::workflow_core::WorkflowError,
                        >,
                    >(__wf_cx, __wf_op) {
                        ::core::option::Option::Some(__wf_value) => __wf_value,
                        ::core::option::Option::None => {
                            *__wf_state = Self::ActivityToBeSkipped {
                                op_id: __wf_op,
                            };
                            return ::core::result::Result::Ok(
                                ::workflow_core::__private::Flow::Pending,
                            );
                        }
                    };
                    return ::workflow_core::__private::finish({
                        {
                            let __wf_exit_0: ::workflow_core::__private::Exit<
                                ::core::result::Result<(), WorkflowError>,
                            > = '__wf_region0: {
                                ::workflow_core::__private::Exit::Return({
                                    let __wf_aw1 = __wf_value;
                                    let skipped = __wf_aw1;
                                    ctx.log(
                                        format!("Error from ActivityToBeSkipped: {skipped:?}"),
                                    );
                                    ctx.log("Workflow Execution complete.");
                                    Ok(())
                                })
                            };
                            if ::workflow_core::__private::handler_runs(
                                &ctx,
                                &__wf_exit_0,
                                ::workflow_core::__private::GuardLevel::Workflow,
                            ) {
                                let cleanup = ::workflow_core::__private::handler_context(
                                    __wf_cx,
                                    "on_cancel#0",
                                );
                                {
                                    let __wf_aw2 = {
                                        let __wf_op = ::workflow_core::__private::start(
                                            cleanup.activity(cleanup_activity, ()),
                                        );
                                        *__wf_state = Self::OnCancelCleanupActivity {
                                            op_id: __wf_op,
                                            pending_exit: __wf_exit_0,
                                            cleanup: ::workflow_core::__private::scope_of(&cleanup),
                                        };
                                        continue '__wf_tramp;
                                    };
                                };
                            }
                            match __wf_exit_0 {
                                ::workflow_core::__private::Exit::Return(__wf_result) => {
                                    __wf_result
                                }
                                ::workflow_core::__private::Exit::Normal => {
                                    ::core::result::Result::Err(
                                        ::core::convert::From::from(
                                            ::workflow_core::__private::left_without_result(
                                                "YourWorkflow",
                                            ),
                                        ),
                                    )
                                }
                            }
                        }
                    });
                }
                Self::OnCancelCleanupActivity {
                    op_id: __wf_op,
                    pending_exit: __wf_l_pending_exit,
                    cleanup: __wf_l_cleanup,
                } => {
                    let __wf_value: ::core::result::Result<
                        <cleanup_activity as ::workflow_core::Activity>::Output,
                        ::workflow_core::WorkflowError,
                    > = match ::workflow_core::__private::poll::<
                        ::core::result::Result<
                            <cleanup_activity as ::workflow_core::Activity>::Output,
                            ::workflow_core::WorkflowError,
                        >,
                    >(__wf_cx, __wf_op) {
                        ::core::option::Option::Some(__wf_value) => __wf_value,
                        ::core::option::Option::None => {
                            *__wf_state = Self::OnCancelCleanupActivity {
                                op_id: __wf_op,
                                pending_exit: __wf_l_pending_exit,
                                cleanup: __wf_l_cleanup,
                            };
                            return ::core::result::Result::Ok(
                                ::workflow_core::__private::Flow::Pending,
                            );
                        }
                    };
                    return ::workflow_core::__private::finish({
                        {
                            let __wf_exit_0 = __wf_l_pending_exit;
                            let () = {
                                let cleanup = ::workflow_core::__private::attach(
                                    __wf_cx,
                                    __wf_l_cleanup,
                                );
                                let __wf_aw2 = __wf_value;
                                if let Err(e) = __wf_aw2 {
                                    cleanup.log(format!("CleanupActivity failed: {e}"));
                                }
                            };
                            match __wf_exit_0 {
                                ::workflow_core::__private::Exit::Return(__wf_result) => {
                                    __wf_result
                                }
                                ::workflow_core::__private::Exit::Normal => {
                                    ::core::result::Result::Err(
                                        ::core::convert::From::from(
                                            ::workflow_core::__private::left_without_result(
                                                "YourWorkflow",
                                            ),
                                        ),
                                    )
                                }
                            }
                        }
                    });
                }
                Self::Finished => {
                    return ::core::result::Result::Err(
                        ::core::convert::From::from(
                            ::workflow_core::__private::resumed_after_finish(
                                "YourWorkflow",
                            ),
                        ),
                    );
                }
            }
        }
    }
}
impl ::workflow_core::WorkflowMachine for YourWorkflowState {
    type Output = ::core::result::Result<(), WorkflowError>;
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
            Self::ActivityToBeCanceled { .. } => "ActivityToBeCanceled",
            Self::ActivityToBeSkipped { .. } => "ActivityToBeSkipped",
            Self::OnCancelCleanupActivity { .. } => "OnCancelCleanupActivity",
            Self::Finished => "Finished",
        }
    }
}
impl ::workflow_core::Workflow for your_workflow {
    const NAME: &'static str = "YourWorkflow";
    const SCHEMA: u64 = ::workflow_core::__private::fingerprint(
        "YourWorkflow|()|WorkflowError|Start{}|ActivityToBeCanceled{#[doc=\"Theoperationawaitedhere.\"]op_id:::workflow_core::__private::OpId,}|ActivityToBeSkipped{#[doc=\"Theoperationawaitedhere.\"]op_id:::workflow_core::__private::OpId,}|OnCancelCleanupActivity{#[doc=\"Theoperationawaitedhere.\"]op_id:::workflow_core::__private::OpId,pending_exit:::workflow_core::__private::Exit<::core::result::Result<(),WorkflowError>>,cleanup:::workflow_core::__private::ScopeId}",
    );
    type Input = ();
    type Output = ();
    type Error = WorkflowError;
    type State = YourWorkflowState;
    fn start(__wf_input: Self::Input) -> Self::State {
        {
            let () = __wf_input;
            YourWorkflowState::Start {}
        }
    }
    fn graph() -> ::workflow_core::StateGraph {
        ::workflow_core::StateGraph {
            workflow: ::std::string::String::from("YourWorkflow"),
            states: ::std::vec![
                ::workflow_core::StateNode { name : ::std::string::String::from("Start"),
                kind : ::workflow_core::StateKind::Start, awaits :
                ::std::string::String::new(), fields : ::std::vec![], },
                ::workflow_core::StateNode { name :
                ::std::string::String::from("ActivityToBeCanceled"), kind :
                ::workflow_core::StateKind::Await, awaits :
                ::std::string::String::from("activity `activity_to_be_canceled`"), fields
                : ::std::vec![], }, ::workflow_core::StateNode { name :
                ::std::string::String::from("ActivityToBeSkipped"), kind :
                ::workflow_core::StateKind::Await, awaits :
                ::std::string::String::from("activity `activity_to_be_skipped`"), fields
                : ::std::vec![], }, ::workflow_core::StateNode { name :
                ::std::string::String::from("OnCancelCleanupActivity"), kind :
                ::workflow_core::StateKind::Handler, awaits :
                ::std::string::String::from("activity `cleanup_activity`"), fields :
                ::std::vec![::std::string::String::from("pending_exit"),
                ::std::string::String::from("cleanup")], }, ::workflow_core::StateNode {
                name : ::std::string::String::from("Finished"), kind :
                ::workflow_core::StateKind::Finished, awaits :
                ::std::string::String::new(), fields : ::std::vec::Vec::new(), }
            ],
            transitions: ::std::vec![
                ::workflow_core::Transition { from :
                ::std::string::String::from("Start"), to :
                ::std::string::String::from("ActivityToBeCanceled"), on_cancel : false,
                }, ::workflow_core::Transition { from :
                ::std::string::String::from("ActivityToBeCanceled"), to :
                ::std::string::String::from("ActivityToBeSkipped"), on_cancel : false, },
                ::workflow_core::Transition { from :
                ::std::string::String::from("ActivityToBeSkipped"), to :
                ::std::string::String::from("Finished"), on_cancel : false, },
                ::workflow_core::Transition { from :
                ::std::string::String::from("ActivityToBeSkipped"), to :
                ::std::string::String::from("OnCancelCleanupActivity"), on_cancel : true,
                }, ::workflow_core::Transition { from :
                ::std::string::String::from("OnCancelCleanupActivity"), to :
                ::std::string::String::from("Finished"), on_cancel : false, }
            ],
        }
    }
}
