// The chat backend's dependencies, behind interfaces: in Lambda a model API and DynamoDB, here (and in
// the tests) fakes that take the time the real calls take.
export class ModelError extends Error {
  readonly code = "MODEL_UNAVAILABLE";
}

export interface Model {
  complete(prompt: string): Promise<string>;
}

export interface MessageStore {
  append(conversationId: string, role: string, text: string): Promise<void>;
}

const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Answers after 20-60 ms; the prompt "fail" makes it fail as an unavailable model does. */
export class FakeModel implements Model {
  async complete(prompt: string): Promise<string> {
    await wait(20 + (prompt.length * 7) % 40);
    if (prompt === "fail") throw new ModelError("model unavailable");
    return `echo: ${prompt}`;
  }
}

export class FakeStore implements MessageStore {
  async append(): Promise<void> {
    await wait(6);
  }
}
