import { Duration, Stack, StackProps } from "aws-cdk-lib";
import * as iam from "aws-cdk-lib/aws-iam";
import * as lambda from "aws-cdk-lib/aws-lambda";
import { Construct } from "constructs";

// The zips `make layer` builds; relative paths are resolved from where `cdk` runs (the repository root).
const LAYER_DIR = "target/layer";

export class PerfmonStack extends Stack {
  constructor(scope: Construct, id: string, props?: StackProps) {
    super(scope, id, props);
    const namespace = "Perfmon";

    // One layer per architecture. To use one already published, replace this with
    // lambda.LayerVersion.fromLayerVersionArn(this, "Perfmon", "arn:aws:lambda:REGION:ACCOUNT:layer:perfmon-arm64:1").
    const perfmonArm64 = new lambda.LayerVersion(this, "PerfmonArm64", {
      layerVersionName: "perfmon-arm64",
      description: "perfmon Lambda extension, arm64 (static musl binary, any runtime)",
      code: lambda.Code.fromAsset(`${LAYER_DIR}/perfmon-layer-arm64.zip`),
      compatibleArchitectures: [lambda.Architecture.ARM_64],
      license: "Apache-2.0",
    });
    new lambda.LayerVersion(this, "PerfmonX8664", {
      layerVersionName: "perfmon-x86_64",
      description: "perfmon Lambda extension, x86_64 (static musl binary, any runtime)",
      code: lambda.Code.fromAsset(`${LAYER_DIR}/perfmon-layer-x86_64.zip`),
      compatibleArchitectures: [lambda.Architecture.X86_64],
      license: "Apache-2.0",
    });

    const fn = new lambda.Function(this, "Function", {
      runtime: lambda.Runtime.NODEJS_22_X,
      architecture: lambda.Architecture.ARM_64,
      handler: "index.handler",
      code: lambda.Code.fromInline("exports.handler = async () => ({ ok: true });"),
      memorySize: 256,
      timeout: Duration.seconds(10),
      layers: [perfmonArm64],
      environment: {
        // perfmon's Runtime API proxy: a sparse invoke costs what a do-nothing extension costs.
        // With another tool's wrapper, keep this one and set PERFMON_NEXT_WRAPPER to the other.
        AWS_LAMBDA_EXEC_WRAPPER: "/opt/perfmon-wrapper",
        PERFMON_NAMESPACE: namespace,
        PERFMON_DIMENSIONS: "Environment=prod",
        PERFMON_SINK: "cloudwatch",
      },
    });

    // PutMetricData for perfmon's namespace only (the EMF sink needs nothing beyond the logs permission).
    fn.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ["cloudwatch:PutMetricData"],
        resources: ["*"],
        conditions: { StringEquals: { "cloudwatch:namespace": namespace } },
      }),
    );
  }
}
