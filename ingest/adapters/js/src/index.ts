export { TroyGuard, BlockedError, GuardUnavailableError, type Decision, type EndResult, type GuardOptions, type Mode, type PolicyObject, type RuleError, type Transport, type Violation } from "./guard.js";
export { LocalGuardError, MAX_LINE_BYTES } from "./local.js";
export { TroyHttpError } from "./http.js";
export { TraceWriter, checkId, MAX_ID_LENGTH, subjectToken, type Step } from "./trace.js";
