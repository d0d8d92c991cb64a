variable "name" {
  description = "Name stem, e.g. rates-dev."
  type        = string
}

variable "resource_group_name" {
  description = "Resource group of the alert rules and the action group."
  type        = string
}

variable "location" {
  description = "Azure region of the log alert rules."
  type        = string
}

variable "log_analytics_workspace_id" {
  description = "Workspace holding the container apps' console logs (ContainerAppConsoleLogs_CL)."
  type        = string
}

variable "api_id" {
  description = "Resource id of the API container app (metric alerts)."
  type        = string
}

variable "api_name" {
  description = "Name of the API container app, to pick its request log lines."
  type        = string
}

variable "rotation_job_name" {
  description = "Name of the rotation job, to pick its log lines."
  type        = string
}

variable "alert_email" {
  description = "Address the action group mails every alert to (the on-call list)."
  type        = string
}

variable "tags" {
  description = "Tags of every resource."
  type        = map(string)
}

variable "expiry_job_name" {
  description = "Name of the access-expiry job (every minute), to pick its log lines."
  type        = string
}

variable "access_alert_job_name" {
  description = "Name of the daily job listing unreviewed emergency grants, to pick its log lines."
  type        = string
}

variable "drill_job_name" {
  description = "Name of the weekly restore-drill job, to pick its log lines."
  type        = string
}
