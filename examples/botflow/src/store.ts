// The conversation history, behind an interface: in Lambda a DynamoDB Query, here (and in the tests) a
// local fake that takes the time a query takes. The monitoring does not depend on which one runs.
export interface Turn {
  role: "user" | "bot";
  text: string;
}

export interface ConversationStore {
  history(userId: string): Promise<Turn[]>;
}

/** DynamoDB stand-in: answers after `latencyMs` (a warm single-partition Query is 5-20 ms). */
export class FakeStore implements ConversationStore {
  constructor(private readonly latencyMs: number) {}

  async history(userId: string): Promise<Turn[]> {
    await new Promise((resolve) => setTimeout(resolve, this.latencyMs));
    return [{ role: "user", text: `hello from ${userId}` }];
  }
}

// In production (AWS SDK v3, @aws-sdk/lib-dynamodb):
//   const out = await ddb.send(new QueryCommand({ TableName, KeyConditionExpression: "userId = :u",
//     ExpressionAttributeValues: { ":u": userId }, Limit: 20, ScanIndexForward: false }));
//   return (out.Items ?? []) as Turn[];
