"""HTTP adapters: parse a wire request, call a service, render the answer or an AWS-shaped error."""
