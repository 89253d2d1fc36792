"""Static assets shared by the trainer and the dashboard: the ImageNet class catalogue."""
