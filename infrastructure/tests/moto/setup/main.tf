# What AWS has and moto lacks before the stack is applied: the public SSM parameter
# naming the GPU AMI (moto serves only a few public parameters), pointed at one of
# moto's own images.

terraform {
  required_providers {
    aws = {
      source = "hashicorp/aws"
    }
  }
}

data "aws_ami" "any" {
  most_recent = true
  owners      = ["amazon"]
  filter {
    name   = "architecture"
    values = ["x86_64"]
  }
}

resource "aws_ssm_parameter" "ami" {
  #checkov:skip=CKV2_AWS_34:Test fixture holding an AMI id, which is public information; AWS's own AMI parameters are plain Strings too.
  name  = "/llmfleet-test/gpu-ami-id"
  type  = "String"
  value = data.aws_ami.any.id
}

output "ami_parameter" {
  description = "Name of the SSM parameter holding the AMI id."
  value       = aws_ssm_parameter.ami.name
}
