# The bucket_policy module: every bucket's policy denies requests without TLS and
# keeps the bucket's own statements. No provider: the policy is plain JSON.

variables {
  bucket_arn = "arn:aws:s3:::llmfleet-test-bucket"
}

run "denies_every_request_without_tls" {
  command = plan
  module {
    source = "./modules/bucket_policy"
  }

  assert {
    condition = one([for s in jsondecode(output.json).Statement : s if s.Effect == "Deny"]) == {
      Sid       = "DenyInsecureTransport", Effect = "Deny", Principal = "*", Action = "s3:*",
      Resource  = ["arn:aws:s3:::llmfleet-test-bucket", "arn:aws:s3:::llmfleet-test-bucket/*"],
      Condition = { Bool = { "aws:SecureTransport" = "false" } }
    }
    error_message = "The policy denies s3:* on the bucket and its objects when aws:SecureTransport is false."
  }
}

run "keeps_the_buckets_own_statements" {
  command = plan
  module {
    source = "./modules/bucket_policy"
  }
  variables {
    policy_json = jsonencode({ Version = "2012-10-17", Statement = [{ Sid = "CloudFrontReadsThroughOAC", Effect = "Allow", Action = "s3:GetObject" }] })
  }

  assert {
    condition     = [for s in jsondecode(output.json).Statement : s.Sid] == ["CloudFrontReadsThroughOAC", "DenyInsecureTransport"]
    error_message = "The bucket's own statements are kept, followed by the TLS deny."
  }
}

run "rejects_a_policy_without_statements" {
  command = plan
  module {
    source = "./modules/bucket_policy"
  }
  variables {
    policy_json = "{}"
  }
  expect_failures = [var.policy_json]
}

run "rejects_something_that_is_not_a_bucket_arn" {
  command = plan
  module {
    source = "./modules/bucket_policy"
  }
  variables {
    bucket_arn = "llmfleet-test-bucket"
  }
  expect_failures = [var.bucket_arn]
}
