export { TroyGuard, BlockedError, type Decision, type GuardOptions, type Mode, type RuleError, type Violation } from "./guard.js";
export { TraceWriter, subjectToken, type Step } from "./trace.js";
