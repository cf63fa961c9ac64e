locals {
  perfmon_namespace = "Perfmon"
  # The zips `make layer` builds (target/layer/ at the repository root).
  layer_dir = "${path.module}/../../target/layer"
}

# One layer per architecture.
resource "aws_lambda_layer_version" "perfmon_arm64" {
  layer_name               = "perfmon-arm64"
  description              = "perfmon Lambda extension, arm64 (static musl binary, any runtime)"
  filename                 = "${local.layer_dir}/perfmon-layer-arm64.zip"
  source_code_hash         = filebase64sha256("${local.layer_dir}/perfmon-layer-arm64.zip")
  compatible_architectures = ["arm64"]
  license_info             = "Apache-2.0"
}

resource "aws_lambda_layer_version" "perfmon_x86_64" {
  layer_name               = "perfmon-x86_64"
  description              = "perfmon Lambda extension, x86_64 (static musl binary, any runtime)"
  filename                 = "${local.layer_dir}/perfmon-layer-x86_64.zip"
  source_code_hash         = filebase64sha256("${local.layer_dir}/perfmon-layer-x86_64.zip")
  compatible_architectures = ["x86_64"]
  license_info             = "Apache-2.0"
}

resource "aws_iam_role" "function" {
  name = "perfmon-example"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole", Principal = { Service = "lambda.amazonaws.com" } }]
  })
}

resource "aws_iam_role_policy_attachment" "logs" {
  role       = aws_iam_role.function.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
}

# PutMetricData for perfmon's namespace only (the EMF sink needs nothing beyond the logs permission).
resource "aws_iam_role_policy" "perfmon" {
  name = "perfmon-put-metric-data"
  role = aws_iam_role.function.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Action    = "cloudwatch:PutMetricData"
      Resource  = "*"
      Condition = { StringEquals = { "cloudwatch:namespace" = local.perfmon_namespace } }
    }]
  })
}

data "archive_file" "function" {
  type                    = "zip"
  output_path             = "${path.module}/function.zip"
  source_content_filename = "index.py"
  source_content          = "def handler(event, context):\n    return {\"ok\": True}\n"
}

resource "aws_lambda_function" "example" {
  function_name    = "perfmon-example"
  role             = aws_iam_role.function.arn
  runtime          = "python3.13"
  handler          = "index.handler"
  filename         = data.archive_file.function.output_path
  source_code_hash = data.archive_file.function.output_base64sha256
  architectures    = ["arm64"]
  memory_size      = 256
  timeout          = 10
  layers           = [aws_lambda_layer_version.perfmon_arm64.arn]
  environment {
    variables = {
      # perfmon's Runtime API proxy: a sparse invoke costs what a do-nothing extension costs.
      # With another tool's wrapper, keep this one and set PERFMON_NEXT_WRAPPER to the other.
      AWS_LAMBDA_EXEC_WRAPPER = "/opt/perfmon-wrapper"
      PERFMON_NAMESPACE       = local.perfmon_namespace
      PERFMON_DIMENSIONS      = "Environment=prod"
      PERFMON_SINK            = "cloudwatch"
    }
  }
}
