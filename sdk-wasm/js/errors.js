// The one error class every rejected promise of @mkondo/sdk carries.
export class MkondoError extends Error {
  constructor(code, message, temporary, reason, retryAfterMs) {
    super(message);
    this.name = 'MkondoError';
    // Stable protocol code: 'not_found', 'permission_denied', 'unavailable', …
    this.code = code;
    // Whether the same call may succeed later.
    this.temporary = temporary;
    // A finer, stable reason within the code ('' when none).
    this.reason = reason;
    // With 'rate_limited': how long to wait, in milliseconds (undefined otherwise).
    this.retryAfterMs = retryAfterMs;
  }
}
