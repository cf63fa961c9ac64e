// The voice app's database, behind an interface: in Lambda DynamoDB, here (and in the tests) a fake
// that takes the time a single-item read takes.
export interface Sessions {
  lookup(sessionId: string): Promise<{ locale: string }>;
}

export class FakeSessions implements Sessions {
  async lookup(): Promise<{ locale: string }> {
    await new Promise((resolve) => setTimeout(resolve, 4));
    return { locale: "en-US" };
  }
}
