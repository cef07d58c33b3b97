"""The fleet simulator: a day of traffic, a scaling policy and the bill, before anyone applies.

A discrete-event simulation of one Auto Scaling group of GPU instances, each running
continuous batching the way vLLM does, behind the load balancer's least-outstanding-
requests routing, scaled by CloudWatch alarms and scaling policies with AWS's
semantics. It sits on the middle floor beside the router, the agent and the load
tests, and reads the planner's timing model and the instance catalogue below it.
"""
