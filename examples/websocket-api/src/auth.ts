// JWT verification, behind an interface: in Lambda a JWKS-backed verifier (e.g. aws-jwt-verify), here
// (and in the tests) a fake that knows three tokens. Failures carry the original's error codes.
export class AuthError extends Error {
  constructor(readonly code: "MISSING_TOKEN" | "TOKEN_EXPIRED" | "INVALID_TOKEN") {
    super(code);
  }
}

export interface TokenVerifier {
  verify(token: string | undefined): Promise<{ userId: string }>;
}

export class FakeVerifier implements TokenVerifier {
  async verify(token: string | undefined): Promise<{ userId: string }> {
    await new Promise((resolve) => setTimeout(resolve, 3));
    if (!token) throw new AuthError("MISSING_TOKEN");
    if (token === "expired") throw new AuthError("TOKEN_EXPIRED");
    if (!token.startsWith("valid-")) throw new AuthError("INVALID_TOKEN");
    return { userId: token.slice("valid-".length) };
  }
}
