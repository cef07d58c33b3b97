output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "vpc_cidr" {
  description = "CIDR of the VPC."
  value       = aws_vpc.this.cidr_block
}

output "public_subnet_ids" {
  description = "Public subnets, one per AZ (load balancer, NAT gateways)."
  value       = [for k in local.az_keys : aws_subnet.public[k].id]
}

output "private_subnet_ids" {
  description = "Private subnets, one per AZ (GPU instances, VPC link, interface endpoints)."
  value       = [for k in local.az_keys : aws_subnet.private[k].id]
}

output "availability_zones" {
  description = "The availability zones in use."
  value       = [for k in local.az_keys : local.azs[k]]
}
