"""llmfleet: provision a private local-LLM service on servers and laptops with Ansible.

Python side: `runner` drives every playbook run through ansible-runner, `progress` shows it
live, `report` summarises it and maps it to an exit code; `project` locates a checkout.
"""
