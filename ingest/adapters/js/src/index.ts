export { TroyGuard, BlockedError, type Decision, type GuardOptions, type Mode, type Violation } from "./guard.js";
