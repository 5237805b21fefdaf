"""Graph change-notification subscriptions (`/subscriptions`), for now on `/communications/callRecords`."""
