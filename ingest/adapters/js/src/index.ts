export { TroyGuard, BlockedError, type Decision, type GuardOptions, type Mode, type RuleError, type Violation } from "./guard.js";
export { TraceWriter, checkId, MAX_ID_LENGTH, subjectToken, type Step } from "./trace.js";
