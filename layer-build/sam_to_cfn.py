"""Transforms a SAM template into the plain CloudFormation `sam deploy` would submit, on stdout (JSON).

    layer-build/.tools/bin/python layer-build/sam_to_cfn.py TEMPLATE.yaml > out.json

Uses aws-sam-translator, the library behind SAM's transform. Local `ContentUri`/`CodeUri` paths are replaced
by an S3 location first (what `sam package` does after uploading them), since the transform only takes S3.
No AWS call is made (the region defaults to us-east-1): the managed-policy map is empty and the template names no managed policy by name.
Exits 1 with the transform's messages on stderr when SAM rejects the template.
"""

import json
import os
import sys

# The transform fills AWS::Region from boto3's configuration; any region gives the same template here.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class NoManagedPolicies:
    """Stands in for the IAM look-up of AWS managed policy names (none are used)."""

    def load(self):
        return {}


def main(path):
    with open(path, encoding="utf-8") as f:
        template = yaml_parse(f.read())
    for resource in template.get("Resources", {}).values():
        props = resource.get("Properties", {})
        for key in ("ContentUri", "CodeUri"):
            value = props.get(key)
            if isinstance(value, str) and not value.startswith("s3://"):
                props[key] = "s3://perfmon-artifacts/" + value.rsplit("/", 1)[-1]
    try:
        out = transform(template, {}, NoManagedPolicies())
    except InvalidDocumentException as e:
        for cause in e.causes:
            print(f"SAM transform: {cause}", file=sys.stderr)
        return 1
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
